//! IIS's StaticFile handler, for the URL paths given with `--static`.
//!
//! Under IIS a site's assets (`/app/static/...`) are not the extension's business: a
//! `<location path="static">` in the application's web.config clears the handler list
//! and maps only StaticFile there, so the extension's `*` mapping never sees those URLs
//! (examples/django-vdir/web.config). `--static /app/static` makes the host do the same:
//! such requests are answered here and never reach `HttpExtensionProc`.
//!
//! What it does, as IIS does: GET and HEAD of an existing regular file, read below the
//! location's physical directory (`--physical-path` + the location below the vdir), with
//! the MIME type IIS's default `<staticContent>` gives its extension. Everything else gets
//! IIS's answer: 404 for a missing file or a directory, for an extension without a MIME
//! type (IIS: 404.3) and for a segment request filtering hides (`web.config`, `bin`, ...;
//! IIS: 404.8); 405 for any other method. It never serves a file outside the location's
//! directory: the URL path is already canonical (decoded, `\` as `/`, no dot-segments: see
//! `vars.rs`), a segment with `:` (an NTFS stream, a drive) is refused, and the file's
//! resolved path (symbolic links followed) must lie in the resolved directory, its names
//! there as the file system resolved them passing request filtering too (Windows finds
//! `web.config` as `web.config.` or by its 8.3 name). No
//! conditional requests, ranges or caching headers: IIS has them, nothing here needs them.
use crate::response::append_http_date;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

/// `<requestFiltering><hiddenSegments>` of IIS's default applicationHost.config.
const HIDDEN_SEGMENTS: [&str; 8] = [
    "web.config",
    "bin",
    "App_code",
    "App_GlobalResources",
    "App_LocalResources",
    "App_WebReferences",
    "App_Data",
    "App_Browsers",
];

/// Entries of IIS's default `<staticContent>` MIME map that web assets use.
const MIME_TYPES: [(&str, &str); 13] = [
    ("css", "text/css"),
    ("js", "application/javascript"),
    ("json", "application/json"),
    ("htm", "text/html"),
    ("html", "text/html"),
    ("txt", "text/plain"),
    ("xml", "text/xml"),
    ("png", "image/png"),
    ("gif", "image/gif"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
];

/// A request for a `--static` location, as `vars::RequestInfo::new` found it.
#[derive(Debug)]
pub struct StaticRequest {
    /// The location's physical directory.
    pub directory: PathBuf,
    /// The canonical URL path below the location (`/css/site.css`), `/`-separated.
    pub below: String,
}

/// What the handler answers.
pub enum Answer {
    /// 200 with the file.
    File {
        file: File,
        length: u64,
        content_type: &'static str,
    },
    /// An error status, with a sentence for the plain-text body.
    Refused((u16, &'static str), &'static str),
}

impl StaticRequest {
    /// IIS's answer to `method` for this URL.
    pub fn answer(&self, method: &str) -> Answer {
        const HIDDEN: Answer =
            Answer::Refused((404, "Not Found"), "request filtering hides this URL");
        let segments: Vec<&str> = self.below.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| s.contains(':') || hidden(s)) {
            return HIDDEN;
        }
        if method != "GET" && method != "HEAD" {
            return Answer::Refused(
                (405, "Method Not Allowed"),
                "the StaticFile handler serves GET and HEAD only",
            );
        }
        let Some((file, length, names)) = self.open(&segments) else {
            return Answer::Refused((404, "Not Found"), "no such file");
        };
        // The names on disk count, not the URL's: Windows also finds web.config as
        // `web.config.` or by its short 8.3 name.
        if names.iter().any(|name| hidden(name)) {
            return HIDDEN;
        }
        match names.last().and_then(|name| mime_type(name)) {
            Some(content_type) => Answer::File {
                file,
                length,
                content_type,
            },
            None => Answer::Refused((404, "Not Found"), "no MIME type for this extension"),
        }
    }

    /// The regular file the segments name, its length and its names below the directory
    /// (as the file system resolved them, symbolic links followed), if it lies inside the
    /// directory.
    fn open(&self, segments: &[&str]) -> Option<(File, u64, Vec<String>)> {
        let directory = self.directory.canonicalize().ok()?;
        let path = segments
            .iter()
            .fold(self.directory.clone(), |p, s| p.join(s))
            .canonicalize()
            .ok()?;
        let names = path
            .strip_prefix(&directory)
            .ok()?
            .iter()
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        let file = File::open(&path).ok()?;
        let metadata = file.metadata().ok()?;
        metadata.is_file().then_some((file, metadata.len(), names))
    }
}

/// Whether request filtering hides a path segment named `name`.
fn hidden(name: &str) -> bool {
    HIDDEN_SEGMENTS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The MIME type of a file named `name`, by its extension.
fn mime_type(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    MIME_TYPES
        .iter()
        .find(|(e, _)| extension.eq_ignore_ascii_case(e))
        .map(|(_, content_type)| *content_type)
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::File { .. } => 200,
            Answer::Refused((code, _), _) => *code,
        }
    }

    /// Writes the response (no body for `head_only`); returns the bytes written.
    pub fn write_to(
        self,
        out: &mut impl Write,
        server: &str,
        head_only: bool,
        keep_alive: bool,
    ) -> io::Result<u64> {
        let ((code, reason), content_type, length, body) = match self {
            Answer::File {
                file,
                length,
                content_type,
            } => ((200, "OK"), content_type, length, Ok(file)),
            Answer::Refused(status, message) => {
                let text = format!("{} {}: {message}\r\n", status.0, status.1);
                let length = text.len() as u64;
                (status, "text/plain; charset=utf-8", length, Err(text))
            }
        };
        let mut head =
            format!("HTTP/1.1 {code} {reason}\r\nServer: {server}\r\nDate: ").into_bytes();
        append_http_date(&mut head);
        let allow = if code == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let connection = if keep_alive { "keep-alive" } else { "close" };
        head.extend_from_slice(
            format!(
                "\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{allow}Connection: {connection}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.write_all(&head)?;
        let mut sent = head.len() as u64;
        if !head_only {
            sent += match body {
                Ok(file) => io::copy(&mut io::Read::take(file, length), out)?,
                Err(text) => {
                    out.write_all(text.as_bytes())?;
                    length
                }
            };
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn site() -> PathBuf {
        let root = std::env::temp_dir().join(format!("isapi-host-static-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("static/css")).unwrap();
        std::fs::write(root.join("static/css/site.css"), "body {}").unwrap();
        std::fs::write(root.join("static/notes.unknown"), "?").unwrap();
        std::fs::write(root.join("static/web.config"), "<configuration/>").unwrap();
        std::fs::write(root.join("secret.py"), "KEY = 1").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(root.join("secret.py"), root.join("static/link.css")).unwrap();
            // Another name for web.config, as Windows has (`web.config.`, an 8.3 name).
            symlink(
                root.join("static/web.config"),
                root.join("static/alias.css"),
            )
            .unwrap();
        }
        root
    }

    fn answer(root: &Path, method: &str, below: &str) -> (u16, String) {
        let request = StaticRequest {
            directory: root.join("static"),
            below: below.into(),
        };
        let mut out = Vec::new();
        let answer = request.answer(method);
        let code = answer.status();
        answer.write_to(&mut out, "Test", false, true).unwrap();
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn serves_files_and_refuses_the_rest() {
        let root = site();
        let (code, text) = answer(&root, "GET", "/css/site.css");
        assert_eq!(code, 200);
        assert!(
            text.contains("Content-Type: text/css\r\nContent-Length: 7\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nbody {}"), "{text}");
        assert!(text.contains("Connection: keep-alive"), "{text}");
        let (code, text) = answer(&root, "POST", "/css/site.css");
        assert_eq!(code, 405);
        assert!(text.contains("Allow: GET, HEAD\r\n"), "{text}");
        for (below, why) in [
            ("/css/missing.css", "no such file"),
            ("/css", "no such file"),
            ("/", "no such file"),
            ("/notes.unknown", "no MIME type"),
            ("/web.config", "request filtering"),
            ("/WEB.CONFIG", "request filtering"),
            ("/bin/x.css", "request filtering"),
            ("/css/site.css::$DATA", "request filtering"),
            ("/../secret.py", "no such file"),
            #[cfg(unix)]
            ("/link.css", "no such file"),
            #[cfg(unix)]
            ("/alias.css", "request filtering"),
        ] {
            let (code, text) = answer(&root, "GET", below);
            assert_eq!(code, 404, "{below}: {text}");
            assert!(text.contains(why), "{below}: {text}");
            assert!(
                !text.contains("KEY") && !text.contains("<configuration"),
                "{below}: {text}"
            );
        }
        let _ = std::fs::remove_dir_all(root);
    }
}
