//! A small, strict XML reader: enough of XML 1.0 for IIS's `web.config` files, nothing more.
//!
//! It reads a document into a tree of [`Element`]s (name, attributes, children, text) and
//! refuses, with the line number, whatever it does not understand rather than guessing:
//!
//! * understood: an optional UTF-8 byte-order mark; the XML declaration and other
//!   processing instructions (skipped); comments (skipped); elements with attributes in
//!   either quote; `<empty/>` elements; text, `<![CDATA[...]]>` sections, and the five
//!   predefined entities (`&amp; &lt; &gt; &quot; &apos;`) plus character references
//!   (`&#65;`, `&#x41;`), in text and attribute values;
//! * refused: a `<!DOCTYPE>` (and so any entity it could define: no entity expansion at
//!   all), unknown entities, a `<` in an attribute value, duplicate attributes, mismatched
//!   or unclosed tags, text or a second element outside the root, nesting deeper than
//!   [`MAX_DEPTH`], input that is not UTF-8.
//!
//! Namespaces are not interpreted: a name is its text (`xdt:Transform` is one name).
//! Callers look up only the elements they know and ignore the rest.

/// How deep elements may nest (web.config files nest a handful of levels).
pub const MAX_DEPTH: usize = 64;

/// An element: its name, attributes in document order, child elements, and its text (the
/// concatenated character data directly inside it, CDATA included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The value of attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The child elements called `name`, in order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |child| child.name == name)
    }
}

/// Parses a whole document and returns its root element. The error says what is wrong
/// and on which line.
pub fn parse(input: &[u8]) -> Result<Element, String> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = std::str::from_utf8(input).map_err(|e| {
        let line = 1 + input[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: the file is not UTF-8")
    })?;
    Reader { text, at: 0 }.document()
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn line(&self) -> usize {
        1 + self.text[..self.at].matches('\n').count()
    }

    fn error(&self, message: &str) -> String {
        format!("line {}: {message}", self.line())
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.at += prefix.len();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches(is_space).len();
    }

    /// Moves past `end`, returning what came before it.
    fn until(&mut self, end: &str, what: &str) -> Result<&'a str, String> {
        let rest = self.rest();
        let length = rest
            .find(end)
            .ok_or_else(|| self.error(&format!("{what} is not closed with `{end}`")))?;
        self.at += length + end.len();
        Ok(&rest[..length])
    }

    /// Skips comments, processing instructions and white space; refuses a DOCTYPE.
    fn misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_space();
            if self.eat("<!--") {
                self.until("-->", "a comment")?;
            } else if self.eat("<?") {
                self.until("?>", "a processing instruction")?;
            } else if self.rest().starts_with("<!DOCTYPE") {
                return Err(self.error("a <!DOCTYPE> is not supported (web.config has none)"));
            } else {
                return Ok(());
            }
        }
    }

    fn document(mut self) -> Result<Element, String> {
        self.misc()?;
        if !self.rest().starts_with('<') {
            return Err(if self.rest().is_empty() {
                self.error("the document is empty")
            } else {
                self.error("text before the root element")
            });
        }
        let root = self.element(1)?;
        self.misc()?;
        if !self.rest().is_empty() {
            return Err(self.error("content after the root element"));
        }
        Ok(root)
    }

    /// One element, starting at its `<`.
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("elements nest deeper than {MAX_DEPTH} levels")));
        }
        self.at += 1; // '<'
        let mut element = Element {
            name: self.name()?,
            ..Element::default()
        };
        loop {
            let spaced = self.rest().starts_with(is_space);
            self.skip_space();
            if self.eat("/>") {
                return Ok(element);
            }
            if self.eat(">") {
                break;
            }
            if !spaced {
                return Err(self.error(&format!(
                    "expected white space, `>` or `/>` in <{}>",
                    element.name
                )));
            }
            let (key, value) = self.attribute()?;
            if element.attribute(&key).is_some() {
                return Err(self.error(&format!("attribute `{key}` appears twice")));
            }
            element.attributes.push((key, value));
        }
        self.content(&mut element, depth)?;
        Ok(element)
    }

    /// Children and text up to and including the element's end tag.
    fn content(&mut self, element: &mut Element, depth: usize) -> Result<(), String> {
        loop {
            let rest = self.rest();
            let text_length = rest.find('<').unwrap_or(rest.len());
            if text_length > 0 {
                let raw = &rest[..text_length];
                self.at += text_length;
                element.text.push_str(&self.unescape(raw)?);
            }
            if self.rest().is_empty() {
                return Err(self.error(&format!("<{}> is not closed", element.name)));
            }
            if self.eat("</") {
                let name = self.name()?;
                self.skip_space();
                if !self.eat(">") || name != element.name {
                    return Err(self.error(&format!("</{name}> does not close <{}>", element.name)));
                }
                return Ok(());
            } else if self.eat("<!--") {
                self.until("-->", "a comment")?;
            } else if self.eat("<![CDATA[") {
                let data = self.until("]]>", "a CDATA section")?;
                element.text.push_str(data);
            } else if self.eat("<?") {
                self.until("?>", "a processing instruction")?;
            } else if self.rest().starts_with("<!") {
                return Err(self.error("a declaration inside an element is not supported"));
            } else {
                let child = self.element(depth + 1)?;
                element.children.push(child);
            }
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let length = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')))
            .unwrap_or(rest.len());
        let name = &rest[..length];
        if !name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        {
            return Err(self.error("expected a name"));
        }
        self.at += length;
        Ok(name.to_string())
    }

    fn attribute(&mut self) -> Result<(String, String), String> {
        let key = self.name()?;
        self.skip_space();
        if !self.eat("=") {
            return Err(self.error(&format!("attribute `{key}` has no `=`")));
        }
        self.skip_space();
        let quote = match self.rest().chars().next() {
            Some(quote @ ('"' | '\'')) => quote,
            _ => {
                return Err(
                    self.error(&format!("the value of `{key}` must be in quotes (\" or ')"))
                );
            }
        };
        self.at += 1;
        let rest = self.rest();
        let length = rest
            .find(quote)
            .ok_or_else(|| self.error(&format!("the value of `{key}` is not closed")))?;
        let raw = &rest[..length];
        if raw.contains('<') {
            return Err(self.error(&format!("`<` in the value of `{key}`")));
        }
        let value = self.unescape(raw)?;
        self.at += length + 1;
        Ok((key, value))
    }

    /// Replaces entity and character references.
    fn unescape(&self, raw: &str) -> Result<String, String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            let after = &rest[amp + 1..];
            let end = after
                .find(';')
                .filter(|&end| end <= 10)
                .ok_or_else(|| self.error("`&` that starts no entity (write &amp;)"))?;
            let entity = &after[..end];
            let character = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32)
                    .filter(|&c| c != '\0'),
            };
            out.push(character.ok_or_else(|| {
                self.error(&format!(
                    "unknown entity or character reference `&{entity};`"
                ))
            })?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Element {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn error(text: &[u8]) -> String {
        parse(text).expect_err("must be refused")
    }

    #[test]
    fn a_web_config() {
        let doc = root(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<!-- the site -->\r\n\
             <configuration>\r\n  <appSettings>\r\n    <add key=\"WSGI_HANDLER\" value='app.app' />\r\n\
             <!-- <add key=\"IGNORED\" value=\"x\"/> -->\r\n    <add key = \"A&amp;B\" value=\"&lt;&#65;&#x42;&quot;&apos;&gt;\"/>\r\n\
             </appSettings>\r\n  <system.webServer><handlers/></system.webServer>\r\n</configuration>\r\n",
        );
        assert_eq!(doc.name, "configuration");
        let settings = doc.children_named("appSettings").next().unwrap();
        let adds: Vec<_> = settings.children_named("add").collect();
        assert_eq!(adds.len(), 2);
        assert_eq!(adds[0].attribute("key"), Some("WSGI_HANDLER"));
        assert_eq!(adds[0].attribute("value"), Some("app.app"));
        assert_eq!(adds[1].attribute("key"), Some("A&B"));
        assert_eq!(adds[1].attribute("value"), Some("<AB\"'>"));
        assert_eq!(doc.children[1].name, "system.webServer");
    }

    #[test]
    fn text_cdata_and_unknown_elements() {
        let doc = root("<a>x &amp; <![CDATA[<not> &amp; a tag]]><b:c q='1'>in</b:c>y<?pi?></a>");
        assert_eq!(doc.text, "x & <not> &amp; a tagy");
        assert_eq!(doc.children[0].name, "b:c");
        assert_eq!(doc.children[0].text, "in");
    }

    #[test]
    fn malformed_input_is_refused_with_its_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   <!-- only a comment -->", "empty"),
            (b"text<a/>", "text before the root"),
            (b"<a/><b/>", "after the root"),
            (b"<a>", "not closed"),
            (b"<a>\n<b>\n</a>", "line 3: </a> does not close <b>"),
            (b"<a></b>", "does not close"),
            (b"<a x=1/>", "in quotes"),
            (b"<a x='1/>", "not closed"),
            (b"<a x='1' x='2'/>", "appears twice"),
            (b"<a x='1'y='2'/>", "white space"),
            (b"<a x='<'/>", "`<` in the value"),
            (b"<a>&nbsp;</a>", "unknown entity"),
            (b"<a>&#0;</a>", "unknown entity"),
            (b"<a>&#xD800;</a>", "unknown entity"),
            (b"<a>AT&T</a>", "starts no entity"),
            (b"<a><!-- open</a>", "comment is not closed"),
            (b"<a><![CDATA[ open</a>", "CDATA section is not closed"),
            (b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DOCTYPE"),
            (b"<a><!ENTITY x 'y'></a>", "declaration"),
            (b"<1a/>", "expected a name"),
            (b"<a>\xff</a>", "not UTF-8"),
        ];
        for (input, expected) in cases {
            let message = error(input);
            assert!(
                message.contains(expected),
                "{:?}: {message}",
                String::from_utf8_lossy(input)
            );
            assert!(message.starts_with("line "), "{message}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "<a>".repeat(100_000);
        assert!(error(deep.as_bytes()).contains("nest deeper"));
        let fine = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert_eq!(root(&fine).name, "a");
    }
}
