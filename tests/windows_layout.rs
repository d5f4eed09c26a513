//! Our `headers/httpext.h` against mingw-w64's `httpext.h`, for the Windows x64 target.
//!
//! Both headers are compiled by the same cross compiler (`x86_64-w64-mingw32-gcc -S`) in a
//! generated C file that turns every struct size, field offset, field size and `HSE_*`
//! constant of OUR header into a `const unsigned long long` object; the numbers are read
//! back from the assembly (`.quad N`), so nothing has to run under wine (zero comes out as `.space 8`). Then:
//!
//! * every struct must have the same size, and every field the same offset and size;
//! * every constant both headers define must have the same value, except where the two
//!   SDKs really differ (listed in [`SDK_DIFFERENCES`]).
//!
//! Constants only we define (mingw-w64's header predates them) are listed, not failed.
//! `tests/layout.rs` pins the same structs to the documented numbers; this test checks
//! that the documentation and a real Windows SDK header agree.
//!
//! The same compiler also checks our `headers/windows/pyconfig.h`: each `SIZEOF_*` and
//! `ALIGNOF_*` it claims must be the real size on Windows x64.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const COMPILER: &str = "x86_64-w64-mingw32-gcc";

/// Constants whose value differs between the current Windows SDK (which we follow) and
/// mingw-w64's older header.
const SDK_DIFFERENCES: &[(&str, &str)] = &[
    (
        "HSE_VERSION_MAJOR",
        "8 in the Windows SDK (IIS 8+), 6 in mingw-w64",
    ),
    (
        "HSE_VERSION",
        "MAKELONG(0, HSE_VERSION_MAJOR): follows HSE_VERSION_MAJOR",
    ),
];

struct Struct {
    name: String,
    fields: Vec<String>,
}

/// The structs of our header: `typedef struct _NAME { TYPE field; ... } NAME;`.
fn our_structs(header: &str) -> Vec<Struct> {
    let mut structs = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for raw in header.lines() {
        let line = strip_comment(raw).trim().to_string();
        if line.starts_with("typedef struct") && line.ends_with('{') {
            current = Some(Vec::new());
        } else if let Some(fields) = current.as_mut() {
            if let Some(rest) = line.strip_prefix('}') {
                let name = rest
                    .trim()
                    .trim_end_matches(';')
                    .split(',')
                    .next()
                    .unwrap()
                    .trim()
                    .to_string();
                structs.push(Struct {
                    name,
                    fields: std::mem::take(fields),
                });
                current = None;
            } else if let Some(declaration) = line.strip_suffix(';') {
                let declarator = declaration.split('[').next().unwrap();
                let field = declarator.rsplit([' ', '*']).next().unwrap();
                fields.push(field.to_string());
            }
        }
    }
    structs
}

/// The object-like `HSE_*` macros of our header with a value (not include guards).
fn our_constants(header: &str) -> Vec<String> {
    header
        .lines()
        .filter_map(|line| line.trim().strip_prefix("#define "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            let name = parts.next()?;
            let has_value = parts.next().is_some();
            (name.starts_with("HSE_") && !name.contains('(') && has_value).then(|| name.to_string())
        })
        .collect()
}

fn strip_comment(line: &str) -> &str {
    line.split("/*").next().unwrap().split("//").next().unwrap()
}

/// C source that makes every number we compare an object `n_<key>`; constants are
/// guarded with #ifdef so that the same body compiles against either header.
fn probe_source(prelude: &str, structs: &[Struct], constants: &[String]) -> String {
    let mut c = format!(
        "{prelude}\n#include <stddef.h>\n#define N(key, value) const unsigned long long n_##key = (value);\n"
    );
    for s in structs {
        let t = &s.name;
        c += &format!("N({t}__size, sizeof({t}))\n");
        for f in &s.fields {
            c += &format!("N({t}__{f}__offset, offsetof({t}, {f}))\n");
            c += &format!("N({t}__{f}__size, sizeof((({t} *)0)->{f}))\n");
        }
    }
    for name in constants {
        c += &format!("#ifdef {name}\nN({name}, (unsigned long long)({name}))\n#endif\n");
    }
    c
}

/// Compiles `source` to assembly and reads back each `n_<key>:` and the value after it.
fn numbers(source: &str, label: &str) -> BTreeMap<String, u64> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("windows_layout");
    std::fs::create_dir_all(&dir).unwrap();
    let c_file = dir.join(format!("{label}.c"));
    std::fs::write(&c_file, source).unwrap();
    let output = Command::new(COMPILER)
        .args(["-S", "-O0", "-o", "-"])
        .arg(&c_file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {COMPILER} ({e}): install mingw-w64 (.ci/setup does)")
        });
    assert!(
        output.status.success(),
        "{COMPILER} failed on {} ({label}):\n{}",
        c_file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let asm = String::from_utf8(output.stdout).unwrap();
    let mut found = BTreeMap::new();
    let mut lines = asm.lines();
    while let Some(line) = lines.next() {
        let Some(key) = line.strip_prefix("n_").and_then(|l| l.strip_suffix(':')) else {
            continue;
        };
        // gcc writes a zero as `.space 8` and anything else as `.quad N`.
        let value = match lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            Some(words) if words.len() == 2 && words[0] == ".quad" => {
                words[1].parse::<i64>().expect("a number") as u64
            }
            Some(words) if words == [".space", "8"] => 0,
            other => panic!("unexpected assembly after n_{key} in {label}: {other:?}"),
        };
        found.insert(key.to_string(), value);
    }
    found
}

#[test]
fn our_httpext_h_matches_mingw_w64_for_windows_x64() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("headers/httpext.h")).unwrap();
    let structs = our_structs(&header);
    let constants = our_constants(&header);
    let fields: usize = structs.iter().map(|s| s.fields.len()).sum();
    // The parser must have found what the header holds: guard against a silent empty run.
    assert!(
        structs.len() >= 13 && fields >= 60,
        "parsed only {} structs / {fields} fields",
        structs.len()
    );
    assert!(
        constants.len() >= 60,
        "parsed only {} constants",
        constants.len()
    );

    let ours_prelude = format!("#include \"{}\"", root.join("headers/httpext.h").display());
    let ours = numbers(&probe_source(&ours_prelude, &structs, &constants), "ours");
    let theirs = numbers(
        &probe_source(
            "#include <windows.h>\n#include <httpext.h>",
            &structs,
            &constants,
        ),
        "mingw",
    );

    let mut problems = Vec::new();
    let mut only_ours = Vec::new();
    let mut compared = 0;
    for (key, value) in &ours {
        match theirs.get(key) {
            Some(theirs) if theirs == value => compared += 1,
            Some(theirs) => match SDK_DIFFERENCES.iter().find(|(name, _)| name == key) {
                Some((_, why)) => eprintln!(
                    "known SDK difference: {key} = {value} (ours) vs {theirs} (mingw-w64): {why}"
                ),
                None => problems.push(format!("{key}: ours {value}, mingw-w64 {theirs}")),
            },
            // Struct numbers are always emitted: only constants can be missing.
            None => only_ours.push(key.clone()),
        }
    }
    eprintln!(
        "compared {compared} numbers ({} structs, {fields} fields, constants); defined only by us: {}",
        structs.len(),
        only_ours.join(" ")
    );
    assert!(
        problems.is_empty(),
        "our httpext.h differs from mingw-w64's:\n{}",
        problems.join("\n")
    );
    assert!(
        only_ours.iter().all(|k| !k.contains("__")),
        "struct numbers missing: {only_ours:?}"
    );
    assert!(
        compared >= 2 * fields + structs.len(),
        "too few numbers compared: {compared}"
    );
}

/// Each size `headers/windows/pyconfig.h` claims, against the real one on Windows x64.
#[test]
fn our_windows_pyconfig_h_states_the_real_sizes() {
    let claims = [
        ("SIZEOF_SHORT", "sizeof(short)"),
        ("SIZEOF_INT", "sizeof(int)"),
        ("SIZEOF_LONG", "sizeof(long)"),
        ("SIZEOF_LONG_LONG", "sizeof(long long)"),
        ("SIZEOF_DOUBLE", "sizeof(double)"),
        ("SIZEOF_FLOAT", "sizeof(float)"),
        ("SIZEOF_VOID_P", "sizeof(void *)"),
        ("SIZEOF_SIZE_T", "sizeof(size_t)"),
        ("SIZEOF_TIME_T", "sizeof(time_t)"),
        ("SIZEOF_OFF_T", "sizeof(off_t)"),
        ("SIZEOF_FPOS_T", "sizeof(fpos_t)"),
        ("SIZEOF_WCHAR_T", "sizeof(wchar_t)"),
        ("SIZEOF__BOOL", "sizeof(_Bool)"),
        ("SIZEOF_HKEY", "sizeof(void *)"),
        ("ALIGNOF_SIZE_T", "_Alignof(size_t)"),
        ("ALIGNOF_LONG", "_Alignof(long)"),
    ];
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("headers/windows/pyconfig.h");
    let mut source = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include <sys/types.h>\n#include <time.h>\n\
         #include \"{}\"\n",
        header.display()
    );
    for (name, real) in claims {
        source.push_str(&format!(
            "const unsigned long long n_claim_{name} = {name};\n\
             const unsigned long long n_real_{name} = {real};\n"
        ));
    }
    let found = numbers(&source, "pyconfig");
    let wrong: Vec<String> = claims
        .iter()
        .filter_map(|(name, _)| {
            let (claim, real) = (
                found[&format!("claim_{name}")],
                found[&format!("real_{name}")],
            );
            (claim != real)
                .then(|| format!("{name}: pyconfig.h says {claim}, Windows x64 has {real}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
