//! The web.config XML reader (`xml::parse`, src/xml.rs) on any bytes: it never panics and
//! never recurses past MAX_DEPTH (a deep input is refused, not a stack overflow); an error
//! names its line; and an accepted document is stable: written back out as XML (names as
//! they are, text and attribute values escaped) it reads as the same tree.
#![no_main]

use isapi_wsgi::xml::{self, Element, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// The element as XML: its text first, then its children (the reader keeps no order
/// between the two: text is the concatenation of the character data directly inside).
fn write(element: &Element, out: &mut String) {
    out.push('<');
    out.push_str(&element.name);
    for (key, value) in &element.attributes {
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        escape(value, out);
        out.push('"');
    }
    out.push('>');
    escape(&element.text, out);
    for child in &element.children {
        write(child, out);
    }
    out.push_str("</");
    out.push_str(&element.name);
    out.push('>');
}

/// How deep the tree nests; every element's attribute names are distinct on the way.
fn depth(element: &Element) -> usize {
    let mut keys: Vec<&str> = element.attributes.iter().map(|(k, _)| &**k).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(
        keys.len(),
        element.attributes.len(),
        "a duplicate attribute"
    );
    1 + element.children.iter().map(depth).max().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    match xml::parse(data) {
        Ok(root) => {
            assert!(depth(&root) <= MAX_DEPTH);
            let mut again = String::new();
            write(&root, &mut again);
            match xml::parse(again.as_bytes()) {
                Ok(reread) => assert_eq!(root, reread, "written out: {again:?}"),
                Err(e) => panic!("the document written out is refused: {e}: {again:?}"),
            }
        }
        Err(message) => assert!(message.starts_with("line "), "{message}"),
    }
});
