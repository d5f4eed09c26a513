//! Configuration from a wfastcgi `web.config`, for sites moving from wfastcgi: used only
//! when there is no `isapi_wsgi.ini`.
//!
//! wfastcgi read its settings from `<appSettings>` in the site's `web.config`. When the
//! extension finds no ini file, it looks for a `web.config` next to the library, then in
//! the library's parent directory (the DLL in the site's folder, or in its `bin\`: the
//! extension starts in `GetExtensionVersion`, before any request could tell it the
//! application's physical path). If that file has a `WSGI_HANDLER` setting, it is the
//! configuration:
//!
//! | appSettings key | becomes |
//! |---|---|
//! | `WSGI_HANDLER` = `pkg.module.attr` or `pkg.module.factory()` | `[wsgi] app = pkg.module:attr` (the last dot splits module and attribute, the first thing wfastcgi tries) |
//! | `PYTHONPATH` (`;`-separated, `%VAR%` expanded) | `[python] path` (relative entries: relative to the web.config) |
//! | `WSGI_LOG` | `[wsgi] log` |
//! | `WSGI_RESTART_FILE_REGEX` | not used (a regex over every file of the site; `reload_on` in an ini takes file patterns): logged |
//! | every other key (`DJANGO_SETTINGS_MODULE`, ...) | set in `os.environ` before the application is imported, as wfastcgi did |
//!
//! The Python comes from the FastCGI handler mapping in the same file, when there is one
//! (`scriptProcessor="C:\Python312\python.exe|...\wfastcgi.py"`: the folder of
//! `python.exe`, or the virtual environment whose `Scripts\` holds it); otherwise the default
//! applies. `<clear/>` and `<remove key=.../>` inside `<appSettings>` are honoured; other
//! elements are ignored. The file is read with the strict reader in [`crate::xml`].
use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::xml::{self, Element};

/// The file name looked for.
pub const FILE_NAME: &str = "web.config";

/// Where a web.config is looked for when no ini exists: next to the library, then in the
/// library's parent directory.
pub fn candidates(library: &Path) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = library.parent() {
        candidates.push(dir.join(FILE_NAME));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(FILE_NAME));
        }
    }
    candidates
}

/// Whether `path` is a web.config for us: it has a `WSGI_HANDLER` setting, or it cannot be
/// read (then loading it reports why).
pub fn applies(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    match std::fs::read(path).map(|bytes| xml::parse(&bytes)) {
        Ok(Ok(root)) => settings(&root).iter().any(|(key, _)| key == "WSGI_HANDLER"),
        _ => true,
    }
}

/// Whether `path` names a web.config (rather than an ini file).
pub fn is_web_config(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.eq_ignore_ascii_case(FILE_NAME))
}

/// Reads the web.config at `path` into a configuration; the second value lists, for the
/// log, what was taken from where.
pub fn load(path: &Path) -> Result<(Config, Vec<String>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let root = xml::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    from_document(&root, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn from_document(root: &Element, path: &Path) -> Result<(Config, Vec<String>), String> {
    if root.name != "configuration" {
        return Err(format!(
            "the root element is <{}>, not <configuration>",
            root.name
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = Config {
        file: Some(path.to_path_buf()),
        ..Config::default()
    };
    let mut notes = Vec::new();
    for (key, value) in settings(root) {
        match key.as_str() {
            "WSGI_HANDLER" => {
                config.app = handler(&value)?;
                notes.push(format!("WSGI_HANDLER {value} as app"));
            }
            "PYTHONPATH" => {
                config.python_path = expand(&value)
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| base.join(p))
                    .collect();
                notes.push(format!("PYTHONPATH {value} as path"));
            }
            "WSGI_LOG" => {
                config.log = (!value.is_empty()).then(|| base.join(&value));
                notes.push(format!("WSGI_LOG {value} as log"));
            }
            "WSGI_RESTART_FILE_REGEX" => notes.push(format!(
                "WSGI_RESTART_FILE_REGEX is not used (write reload_on = file patterns in an \
                 isapi_wsgi.ini instead; without it nothing is reloaded): {value}"
            )),
            _ => {
                notes.push(format!("{key} into os.environ"));
                config.environment.push((key, value));
            }
        }
    }
    if let Some(home) = python_home(root) {
        notes.push(format!(
            "the Python of the FastCGI handler mapping: home {}",
            home.display()
        ));
        if home.join("pyvenv.cfg").is_file() {
            config.venv = Some(home.clone());
        }
        config.python_home = Some(home);
    }
    Ok((config, notes))
}

/// `<configuration><appSettings>`'s settings in effect, in order (`add`, `remove`, `clear`).
fn settings(root: &Element) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = Vec::new();
    for section in root.children_named("appSettings") {
        for child in &section.children {
            let key = child.attribute("key").unwrap_or_default().to_string();
            match child.name.as_str() {
                "add" => {
                    let value = child.attribute("value").unwrap_or_default().to_string();
                    settings.retain(|(k, _)| *k != key);
                    settings.push((key, value));
                }
                "remove" => settings.retain(|(k, _)| *k != key),
                "clear" => settings.clear(),
                _ => {}
            }
        }
    }
    settings
}

/// `pkg.module.attr` or `pkg.module.factory()` as an app spec.
fn handler(value: &str) -> Result<config::AppSpec, String> {
    let (dotted, call) = match value.trim().strip_suffix("()") {
        Some(dotted) => (dotted, "()"),
        None => (value.trim(), ""),
    };
    let (module, attribute) = dotted.rsplit_once('.').ok_or_else(|| {
        format!("appSettings WSGI_HANDLER: `{value}` is not module.attribute (e.g. app.app or mysite.wsgi.application)")
    })?;
    config::parse_app(&format!("{module}:{attribute}{call}"))
        .map_err(|e| format!("appSettings WSGI_HANDLER: `{value}`: {e}"))
}

/// `%NAME%` replaced by the environment variable (empty when unset), as wfastcgi does.
fn expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end)
                if end > 0
                    && after[..end]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_') =>
            {
                out.push_str(&rest[..start]);
                out.push_str(&std::env::var(&after[..end]).unwrap_or_default());
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..=start]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The Python home named by a FastCGI handler mapping
/// (`<system.webServer><handlers><add scriptProcessor="...python.exe|...wfastcgi.py">`):
/// the folder of python.exe, or the virtual environment (or Unix prefix) above its
/// `Scripts` (or `bin`) folder.
fn python_home(root: &Element) -> Option<PathBuf> {
    let processor = root
        .children_named("system.webServer")
        .flat_map(|web| web.children_named("handlers"))
        .flat_map(|handlers| handlers.children_named("add"))
        .filter_map(|add| add.attribute("scriptProcessor"))
        .find(|processor| processor.to_ascii_lowercase().contains("wfastcgi"))?;
    let program = processor.split('|').next()?.trim();
    // Windows paths, read on any system: split on both separators.
    let cut = program.rfind(['\\', '/'])?;
    let dir = &program[..cut];
    let leaf = dir.rsplit(['\\', '/']).next().unwrap_or_default();
    let home = if leaf.eq_ignore_ascii_case("scripts") || leaf == "bin" {
        &dir[..dir.len() - leaf.len() - 1]
    } else {
        dir
    };
    (!home.is_empty()).then(|| PathBuf::from(home))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<(Config, Vec<String>), String> {
        let root = xml::parse(text.as_bytes())?;
        from_document(&root, Path::new("/srv/site/web.config"))
    }

    #[test]
    fn wfastcgi_settings_map_onto_the_configuration() {
        let (config, notes) = load_text(
            r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <appSettings>
    <add key="WSGI_HANDLER" value="mysite.wsgi.application" />
    <add key="PYTHONPATH" value="src;%ISAPI_WSGI_TEST_UNSET%lib" />
    <add key="WSGI_LOG" value="logs\wfastcgi.log" />
    <add key="DJANGO_SETTINGS_MODULE" value="mysite.settings" />
    <add key="OLD" value="x" /><remove key="OLD" />
    <add key="WSGI_RESTART_FILE_REGEX" value=".*((\.py)|(\.config))$" />
  </appSettings>
  <system.webServer>
    <handlers>
      <add name="Python FastCGI" path="*" verb="*" modules="FastCgiModule"
           scriptProcessor="C:\Python312\python.exe|C:\Python312\Lib\site-packages\wfastcgi.py"
           resourceType="Unspecified" />
    </handlers>
  </system.webServer>
</configuration>"#,
        )
        .unwrap();
        assert_eq!(
            config.app,
            config::AppSpec::Named {
                module: "mysite.wsgi".into(),
                attribute: "application".into(),
                call: false
            }
        );
        assert_eq!(
            config.python_path,
            vec![
                PathBuf::from("/srv/site/src"),
                PathBuf::from("/srv/site/lib")
            ]
        );
        assert_eq!(
            config.log,
            Some(PathBuf::from("/srv/site").join("logs\\wfastcgi.log"))
        );
        assert_eq!(
            config.environment,
            vec![("DJANGO_SETTINGS_MODULE".into(), "mysite.settings".into())]
        );
        assert_eq!(config.python_home, Some(PathBuf::from("C:\\Python312")));
        assert!(
            notes
                .iter()
                .any(|n| n.contains("WSGI_RESTART_FILE_REGEX is not used"))
        );
    }

    #[test]
    fn a_factory_handler_and_a_venv_python() {
        let (config, _) = load_text(
            "<configuration><appSettings><clear/>\
             <add key='WSGI_HANDLER' value='django.core.wsgi.get_wsgi_application()'/>\
             </appSettings><system.webServer><handlers><add name='x' \
             scriptProcessor='D:\\site\\venv\\Scripts\\python.exe|D:\\site\\venv\\Lib\\site-packages\\wfastcgi.py'/>\
             </handlers></system.webServer></configuration>",
        )
        .unwrap();
        assert_eq!(
            config.app,
            config::AppSpec::Named {
                module: "django.core.wsgi".into(),
                attribute: "get_wsgi_application".into(),
                call: true
            }
        );
        assert_eq!(config.python_home, Some(PathBuf::from("D:\\site\\venv")));
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let error = load_text(
            "<configuration><appSettings><add key='WSGI_HANDLER' value='app'/></appSettings></configuration>",
        )
        .unwrap_err();
        assert!(
            error.contains("WSGI_HANDLER") && error.contains("module.attribute"),
            "{error}"
        );
        let error = load_text("<settings/>").unwrap_err();
        assert!(error.contains("not <configuration>"), "{error}");
        let error = load_text(
            "<configuration><appSettings><add key='WSGI_HANDLER' value='a.b-c'/></appSettings></configuration>",
        )
        .unwrap_err();
        assert!(error.contains("WSGI_HANDLER"), "{error}");
    }

    #[test]
    fn percent_variables_expand_and_stray_percents_stay() {
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var("ISAPI_WSGI_TEST_EXPAND", "X") };
        assert_eq!(expand("a%ISAPI_WSGI_TEST_EXPAND%b"), "aXb");
        assert_eq!(expand("100% sure"), "100% sure");
        assert_eq!(expand("%%"), "%%");
        assert_eq!(expand("%ISAPI_WSGI_TEST_NOT_SET_ANYWHERE%x"), "x");
    }
}
