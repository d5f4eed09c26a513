//! The ini parser (`Config::parse`, src/config.rs) on any text: it never panics; it answers
//! the same for the same text; line endings do not matter (the same text with CRLF gives
//! the same configuration or the same error, line numbers included); a comment line after
//! the end changes nothing; and a configuration it accepts keeps the bounds it documents.
#![no_main]

use std::path::Path;

use isapi_wsgi::config::Config;
use libfuzzer_sys::fuzz_target;

/// Where the file "lives" (relative paths resolve against it; nothing is read there).
const FILE: &str = "/nonexistent/isapi-wsgi-fuzz/isapi_wsgi.ini";

fn outcome(text: &str) -> Result<String, String> {
    Config::parse(text, Path::new(FILE)).map(|config| format!("{config:?}"))
}

fuzz_target!(|data: &[u8]| {
    // The file is read with read_to_string: text that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = outcome(text);
    assert_eq!(first, outcome(text), "parsing is not deterministic");
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(
        first,
        outcome(&crlf),
        "CRLF line endings changed the outcome"
    );
    let commented = format!("{text}\n; a comment after the end\n");
    assert_eq!(
        first,
        outcome(&commented),
        "a trailing comment changed the outcome"
    );
    if let Ok(config) = Config::parse(text, Path::new(FILE)) {
        assert_eq!(config.file.as_deref(), Some(Path::new(FILE)));
        assert!((1..=1024).contains(&config.threads));
        assert!(config.queue <= 1_000_000);
        assert!(config.shutdown_timeout.as_secs() <= 3600);
        assert!(
            config.max_body != Some(0),
            "max_body 0 means no limit (None)"
        );
        assert!(config.request_timeout.is_none_or(|t| t.as_secs() > 0));
        assert!(config.gil_stall.is_none_or(|t| t.as_secs() > 0));
        assert!(
            config.unhealthy_after.is_none() || config.request_timeout.is_some(),
            "unhealthy_after without request_timeout"
        );
        assert!(config.unhealthy_after != Some(0));
        assert!(config.python_version.is_none_or(|minor| minor >= 8));
        for path in config.python_path.iter().chain(&config.reload_on) {
            assert!(
                path.is_absolute(),
                "{path:?} is not resolved against the file"
            );
        }
        for pattern in &config.reload_on {
            assert!(pattern.file_name().is_some());
        }
    }
});
