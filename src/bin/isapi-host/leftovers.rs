//! What a request that is done leaves on its thread for the next request there: memory that
//! the next one writes into instead of allocating and freeing its own. Two kinds:
//!
//! * a request head's header buffers (http.rs's `HeaderFields`), emptied when the request
//!   ends: the next head parsed on the thread goes into them;
//! * the retained part of an older request whose slot let go of it (exchange.rs's
//!   `Retained`: its `Arc` and the ECB's strings buffer): the next request registered on the
//!   thread is built in it.
//!
//! Each kind has a shelf of its own per thread, declared where the kind is (a `thread_local!`
//! list of a few items). [`keep`] puts one there, [`take`] takes the one put there last. The
//! giver decides what is worth keeping (how large a buffer may be) and how many. Once a
//! thread that is ending has dropped its shelf, `take` finds nothing and `keep` drops what
//! it was given; what is on a shelf is freed with it.
//!
//! (The bridge has a mechanism of its own for its buffers, `isapi_wsgi::wsgi::spare`: the
//! host does not depend on the bridge.)

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's shelf for one kind of leftover.
pub type Shelf<T> = LocalKey<RefCell<Vec<T>>>;

/// The leftover put on `shelf` last, if any.
pub fn take<T: 'static>(shelf: &'static Shelf<T>) -> Option<T> {
    shelf
        .try_with(|items| items.borrow_mut().pop())
        .ok()
        .flatten()
}

/// Puts `item` on `shelf` for the thread's next request, unless `most` are there already
/// (then it is dropped, after the shelf is let go of).
pub fn keep<T: 'static>(shelf: &'static Shelf<T>, item: T, most: usize) {
    let refused = shelf.try_with(|items| {
        let mut items = items.borrow_mut();
        if items.len() < most {
            items.push(item);
            None
        } else {
            Some(item)
        }
    });
    drop(refused);
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local!(static SHELF: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) });

    #[test]
    fn the_last_leftover_kept_is_taken_first_and_a_full_shelf_keeps_no_more() {
        assert_eq!(take(&SHELF), None);
        keep(&SHELF, "first".to_string(), 2);
        keep(&SHELF, "second".to_string(), 2);
        keep(&SHELF, "third".to_string(), 2); // the shelf is full: dropped
        assert_eq!(take(&SHELF).as_deref(), Some("second"));
        assert_eq!(take(&SHELF).as_deref(), Some("first"));
        assert_eq!(take(&SHELF), None);
    }

    #[test]
    fn a_shelf_of_one_keeps_the_first_until_it_is_taken() {
        thread_local!(static ONE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) });
        keep(&ONE, 1, 1);
        keep(&ONE, 2, 1);
        assert_eq!(take(&ONE), Some(1));
        keep(&ONE, 3, 1);
        assert_eq!(take(&ONE), Some(3));
    }
}
