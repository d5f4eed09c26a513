//! The Windows build of the host serving the Windows build of the test extension under
//! wine: the same source, the real Win32 code paths (WSAPoll, LoadLibraryExW, console
//! Ctrl-C, ReadFile on a HANDLE for TRANSMIT_FILE), and the defenses against slow and
//! resetting clients (`common::hostile`, as on Linux).
//!
//! Ignored by default because it needs the Windows build and wine:
//!
//! ```text
//! cargo build --target x86_64-pc-windows-gnu --bin isapi-host --example test_extension
//! cargo test --test host_wine -- --ignored
//! ```
//!
//! wine 8 lacks `bcryptprimitives.dll`, which Rust's std imports: use a prefix prepared by
//! `.ci/wine-setup` (`WINEPREFIX=target/wineprefix`), or put that shim next to the exe.
mod common;

use common::{Host, Launch, get};
use std::path::PathBuf;

fn windows_build(name: &str) -> PathBuf {
    let target = common::target_dir();
    let profile = target.file_name().unwrap().to_owned();
    let root = target
        .parent()
        .unwrap()
        .join("x86_64-pc-windows-gnu")
        .join(profile);
    let path = root.join(name);
    assert!(
        path.is_file(),
        "{} is missing: cargo build --target x86_64-pc-windows-gnu --bin isapi-host --example test_extension",
        path.display()
    );
    path
}

#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build and wine"]
fn windows_host_under_wine() {
    let exe = windows_build("isapi-host.exe");
    let dll = windows_build("examples/test_extension.dll");
    let host = Host::launch(&Launch::wine(&exe), &dll, &["--strict"], &[]);
    assert_eq!(get(host.addr, "/hello").text(), "Hello, world!");
    let vars = get(host.addr, "/vars").text();
    let checks: Vec<&str> = vars.lines().filter(|l| l.starts_with("check.")).collect();
    assert!(
        checks.len() >= 8 && checks.iter().all(|l| l.ends_with("=ok")),
        "{vars}"
    );
    assert!(
        vars.contains("APPL_PHYSICAL_PATH=") && vars.contains("\\\\\n"),
        "Windows paths end with \\:\n{vars}"
    );
    assert_eq!(get(host.addr, "/async?n=3&size=4").text(), "abcdabcdabcd");
    assert_eq!(
        get(host.addr, "/pending").text(),
        "finished on another thread"
    );
    // TRANSMIT_FILE with a Win32 HANDLE: the file through wine's Z: drive.
    let file = std::env::temp_dir().join(format!("isapi-host-wine-{}.bin", std::process::id()));
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let windows_path = format!("Z:{}", file.display()).replace('/', "\\");
    let r = get(host.addr, &format!("/transmit?path={windows_path}"));
    let mut expected = content;
    expected.extend_from_slice(b"[tail]");
    assert!(
        r.body == expected,
        "TRANSMIT_FILE body differs ({} bytes)",
        r.body.len()
    );
    // The same file through one handle the extension keeps open with FILE_FLAG_OVERLAPPED,
    // by several requests at once: each read waits on its own event, never on the shared
    // handle, so every response carries exactly its own range.
    let clients: Vec<_> = (0..3)
        .map(|k| {
            let (addr, path, expected) = (host.addr, windows_path.clone(), expected.clone());
            std::thread::spawn(move || {
                for i in 0..3 {
                    let offset = (k * 3 + i) * 1000;
                    let target = format!("/transmit?path={path}&shared=1&offset={offset}");
                    let r = get(addr, &target);
                    assert_eq!(r.status, 200, "{target}: {}", r.text());
                    assert!(
                        r.body[..] == expected[offset..],
                        "{target}: {} bytes differ",
                        r.body.len()
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    std::fs::remove_file(&file).unwrap();
    // Ctrl-C (wine turns SIGINT into a console event): orderly shutdown.
    common::stop_clean(host);
}

/// The defenses against slow clients on Windows (the leader/follower poller over
/// WSAPoll): 16 slow clients of each kind (slowloris, slow POST in the pre-read and in
/// ReadClient, a reader that reads nothing of 64 MiB) beside 4 workers, and fresh GETs
/// each answered within 1 s.
#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build and wine"]
fn windows_host_slow_clients_under_wine() {
    let exe = windows_build("isapi-host.exe");
    let dll = windows_build("examples/test_extension.dll");
    for drip in common::hostile::Drip::ALL {
        let host = Host::launch(
            &Launch::wine(&exe),
            &dll,
            &["--strict", "--threads", "4", "--access-log", "off"],
            &[],
        );
        common::hostile::fresh_gets_beside(
            &host,
            16,
            drip,
            &common::hostile::RUST,
            "Windows host under wine",
        );
        common::stop_clean(host);
    }
}

/// A client resetting its connection at each phase of a request, on Windows (the file
/// for TRANSMIT_FILE through wine's Z: drive).
#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build and wine"]
fn windows_host_client_resets_under_wine() {
    let exe = windows_build("isapi-host.exe");
    let dll = windows_build("examples/test_extension.dll");
    let dir = common::scratch_dir("wine-resets");
    let file = dir.join("big.bin");
    std::fs::write(&file, vec![b'f'; 32 << 20]).unwrap();
    let windows_path = format!("Z:{}", file.display()).replace('/', "\\");
    let host = Host::launch(&Launch::wine(&exe), &dll, &["--strict"], &[]);
    // The request reaches the script escaped (it decodes `\r\n`): so is each `\`.
    let escaped = windows_path.replace('\\', "\\\\");
    common::hostile::client_resets_at_every_phase(host, &escaped);
    let _ = std::fs::remove_dir_all(&dir);
}
