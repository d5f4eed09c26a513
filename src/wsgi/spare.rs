//! Buffers a request borrows from its thread and gives back when it is done with them, so
//! that the next request on the thread writes into the same memory instead of allocating:
//! the request's headers (headers.rs), where it goes (environ.rs's `Target`), and its
//! response's status line and header block (framing.rs's `Head`).
//!
//! Each kind of buffer has a slot of its own per thread: a `thread_local!` `Cell` holding
//! one empty `Vec` while no request has it. [`take`] empties the slot; [`give`] fills it
//! again. A thread that is ending has no slot any more: then `take` makes a new buffer and
//! `give` frees it.
use std::cell::Cell;
use std::thread::LocalKey;

/// A thread's slot for one kind of buffer.
pub type Slot<T> = LocalKey<Cell<Vec<T>>>;

/// The largest buffer a thread keeps, in bytes (a request with unusually large headers or
/// URL does not pin its memory to the thread).
const KEEP_BYTES: usize = 64 * 1024;

/// The slot's buffer, emptied (a new one if the slot is empty).
pub fn take<T: 'static>(slot: &'static Slot<T>) -> Vec<T> {
    let mut buffer = slot.try_with(Cell::take).unwrap_or_default();
    buffer.clear();
    buffer
}

/// Keeps `buffer` in the slot for the thread's next request, unless it is empty (the slot
/// keeps what it has then) or larger than [`KEEP_BYTES`].
pub fn give<T: 'static>(slot: &'static Slot<T>, buffer: Vec<T>) {
    let bytes = buffer.capacity() * std::mem::size_of::<T>();
    if buffer.capacity() == 0 || bytes > KEEP_BYTES {
        return;
    }
    let _ = slot.try_with(|kept| kept.set(buffer));
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local!(static SLOT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) });

    #[test]
    fn a_buffer_given_back_is_the_next_one_taken_emptied() {
        let mut buffer = take(&SLOT);
        buffer.extend_from_slice(b"first request");
        let (pointer, capacity) = (buffer.as_ptr(), buffer.capacity());
        give(&SLOT, buffer);
        give(&SLOT, Vec::new()); // an empty one does not replace it
        let again = take(&SLOT);
        assert!(again.is_empty());
        assert_eq!((again.as_ptr(), again.capacity()), (pointer, capacity));
        // A buffer too large to keep is freed: the slot is empty afterwards.
        give(&SLOT, Vec::with_capacity(KEEP_BYTES + 1));
        assert_eq!(take(&SLOT).capacity(), 0);
    }
}
