//! The IIS deployment kit in `examples/iis/` is checked here as far as a machine without IIS
//! can: every XML file is well-formed and says what docs/iis.md promises (the handler
//! mapping to IsapiModule, the restriction entry), and the example ini is accepted by the
//! extension's own configuration parser. (`install.ps1` needs PowerShell and IIS to run:
//! it is checked for the appcmd calls it must make and for its `-Uninstall` switch.)
use std::path::{Path, PathBuf};
use std::process::Command;

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iis")
}

/// Parses an XML file with Python's xml.etree and returns, one per line, `tag attr=value...`
/// for every element whose tag is `add` (handler mappings and restriction entries).
fn add_elements(file: &Path) -> Vec<String> {
    let script = "import sys, xml.etree.ElementTree as ET\n\
        root = ET.parse(sys.argv[1]).getroot()\n\
        for parent in root.iter():\n\
        \x20   for e in parent.findall('add'):\n\
        \x20       print(parent.tag, ' '.join('%s=%s' % kv for kv in sorted(e.attrib.items())))";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{} is not well-formed XML: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn each_web_config_maps_every_url_to_the_isapi_module_in_64_bit_pools() {
    for site in ["site-root", "vdir"] {
        let file = kit().join(site).join("web.config");
        let handlers: Vec<String> = add_elements(&file)
            .into_iter()
            .filter(|line| line.starts_with("handlers "))
            .collect();
        assert_eq!(
            handlers.len(),
            1,
            "{}: one handler mapping expected, got {handlers:?}",
            file.display()
        );
        let mapping = &handlers[0];
        for expected in [
            "modules=IsapiModule",
            "path=*",
            "preCondition=bitness64",
            "requireAccess=Script",
            "resourceType=Unspecified",
            "verb=*",
        ] {
            assert!(
                mapping.split(' ').any(|a| a == expected),
                "{}: {expected} missing in {mapping}",
                file.display()
            );
        }
        assert!(
            mapping.contains("scriptProcessor=") && mapping.contains("isapi_wsgi.dll"),
            "{}: scriptProcessor must name the DLL: {mapping}",
            file.display()
        );
    }
}

#[test]
fn the_restriction_entry_allows_the_dll() {
    let entries = add_elements(&kit().join("isapiCgiRestriction.config"));
    assert!(
        entries
            .iter()
            .any(|e| e.contains("allowed=true") && e.contains("isapi_wsgi.dll")),
        "no allowed entry for isapi_wsgi.dll in {entries:?}"
    );
}

#[test]
fn the_example_ini_is_a_valid_configuration() {
    let config = isapi_wsgi::config::Config::load(&kit().join("isapi_wsgi.ini"));
    assert!(
        config.is_ok(),
        "examples/iis/isapi_wsgi.ini: {:?}",
        config.err()
    );
}

#[test]
fn install_ps1_makes_the_appcmd_calls_and_can_undo_them() {
    let script = std::fs::read_to_string(kit().join("install.ps1")).unwrap();
    for needed in [
        "isapiCgiRestriction",
        "system.webServer/handlers",
        "IsapiModule",
        "bitness64",
        "Uninstall",
        // write access where the extension logs: -LogDirectory, the ini's `log =`, or
        // the default <dll>.log (the file alone, never the DLL's folder)
        "function Get-LogTarget",
        "$section -eq \"wsgi\" -and $text -match '^log\\s*=",
        "[IO.Path]::ChangeExtension($Dll, \".log\")",
        "/grant \"${identity}:M\"",
    ] {
        assert!(
            script.contains(needed),
            "install.ps1 does not mention {needed}"
        );
    }
}

/// The fixed text of every message the extension logs about itself (start-up, shutdown, the
/// threadpool): the string literal of each `log::line(...)` call in these files, with its
/// `{...}` placeholders cut out.
fn extension_messages() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in [
        "src/lib.rs",
        "src/handler/mod.rs",
        "src/handler/threadpool.rs",
        "src/wsgi/mod.rs",
        "src/wsgi/response.rs",
        "src/wsgi/framing.rs",
        "src/wsgi/in_flight.rs",
        "src/watchdog/mod.rs",
        "src/maintenance.rs",
    ] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        for (at, _) in text.match_indices("log::line(") {
            let rest = &text[at..];
            let call_end = rest.find(");").unwrap_or(rest.len());
            let Some(open) = rest[..call_end].find('"') else {
                continue; // a message built elsewhere (e.g. `&message`)
            };
            found.push((file.to_string(), string_literal(&rest[open + 1..])));
        }
    }
    found
}

/// The text of a Rust string literal whose opening quote is just before `source`: escapes
/// kept as written, except `\` + newline (a line continuation: the newline and the next
/// line's indentation go).
fn string_literal(source: &str) -> String {
    let mut text = String::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('\n') => while chars.next_if(|c| c.is_whitespace()).is_some() {},
                Some(escaped) => {
                    text.push('\\');
                    text.push(escaped);
                }
                None => break,
            },
            _ => text.push(c),
        }
    }
    text
}

#[test]
fn docs_iis_md_explains_every_message_the_extension_logs_about_itself() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/iis.md")).unwrap();
    let messages = extension_messages();
    assert!(messages.len() >= 15, "found only {messages:?}");
    let mut missing = Vec::new();
    for (file, message) in &messages {
        // The fixed pieces between placeholders ({name}, {}, ...).
        let pieces = message
            .split('{')
            .enumerate()
            .map(|(n, part)| {
                if n == 0 {
                    part
                } else {
                    part.split_once('}').map_or("", |p| p.1)
                }
            })
            // A line break in the message (`\n`) separates pieces too: the docs show the
            // traceback that follows it as text.
            .flat_map(|piece| piece.split("\\n"))
            .map(|piece| piece.trim().trim_start_matches(':').trim())
            .filter(|piece| piece.len() >= 8);
        for piece in pieces {
            if !docs.contains(piece) {
                missing.push(format!("{file}: {piece:?} (from {message:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/iis.md does not explain:\n{}",
        missing.join("\n")
    );
}
