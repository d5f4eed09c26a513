//! A load run per handler (benches/load.sh is the timed one): 51 200 requests over 64
//! keep-alive connections to the real `isapi-host --strict`, with the host's resident memory
//! (VmRSS) sampled after every 5 120. Every response must be a correct 200, the host must
//! report zero contract violations, and memory must level off: the second half of the run
//! may not add more than 1 MiB (a leak of 100 bytes per request would).
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Client, Host};

const CONNECTIONS: usize = 64;
const ROUNDS: usize = 10;
const PER_ROUND: usize = 5120;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn load_run(handler: &str) {
    let dir = std::env::temp_dir().join(format!(
        "isapi-wsgi-threadpool-load-{handler}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let apps = common::apps_dir();
    let ini = dir.join("site.ini");
    std::fs::write(
        &ini,
        format!(
            "[python]\npath = {}\n[wsgi]\napp = threadpool_app:application\nhandler = {handler}\n\
             threads = 8\nqueue = {CONNECTIONS}\nlog = {}\n",
            apps.display(),
            dir.join("wsgi.log").display()
        ),
    )
    .unwrap();
    // glibc's default malloc, as in production (no MALLOC_ARENA_MAX).
    let host = Host::start_with_env(
        &common::bridge_library(),
        &[
            "--strict",
            "--access-log",
            "off",
            "--config",
            ini.to_str().unwrap(),
        ],
        &[],
    );
    let addr = host.addr;
    let errors = Arc::new(AtomicUsize::new(0));
    let mut samples = vec![rss_kib(host.pid())];
    for _ in 0..ROUNDS {
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let errors = errors.clone();
                std::thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    for _ in 0..PER_ROUND / CONNECTIONS {
                        client.send(b"GET /hello HTTP/1.1\r\nHost: load\r\n\r\n");
                        let r = client.response(false);
                        if r.status != 200 || !r.text().starts_with("hello from") {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        samples.push(rss_kib(host.pid()));
    }
    let stopped = host.stop();
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "{handler}: wrong answers"
    );
    assert!(stopped.status.success(), "{handler}: {}", stopped.stderr);
    assert!(
        stopped.stderr.contains("stopped; 0 contract violation(s)"),
        "{handler}: {}",
        stopped.stderr
    );
    let half = samples[ROUNDS / 2];
    let end = samples[ROUNDS];
    eprintln!("{handler}: VmRSS (KiB) after each {PER_ROUND} requests: {samples:?}");
    assert!(
        end.saturating_sub(half) <= 1024,
        "{handler}: memory grew by {} KiB over the second half of the run: {samples:?}",
        end - half
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_threadpool_handler() {
    load_run("threadpool");
}

#[test]
fn load_simple_handler() {
    load_run("simple");
}
