//! Each deliberate contract violation of the test extension is detected and reported with
//! its request, and `--strict` turns them into a non-zero exit status.
mod common;

use common::{Host, get, test_extension};

#[test]
fn every_violation_is_reported() {
    // One worker thread: an I/O completion is queued for a worker, so none can run before
    // HttpExtensionProc returns, and the async cases below happen in a fixed order.
    let host = Host::start(
        &test_extension(),
        &[
            "--strict",
            "--trace",
            "--shutdown-timeout",
            "1",
            "--threads",
            "1",
        ],
    );
    let cases: &[(&str, &str)] = &[
        ("dws-without-pending", "did not return HSE_STATUS_PENDING"),
        ("dws-twice", "HSE_REQ_DONE_WITH_SESSION called twice"),
        (
            "after-done",
            "with the HCONN of a request that has already ended",
        ),
        ("headers-twice", "response headers sent more than once"),
        ("bad-status", "does not start with a 3-digit code"),
        ("bare-lf", "ends with a bare LF"),
        ("cr-in-value", "bare CR inside header line"),
        ("no-blank-line", "does not end with a blank line"),
        (
            "cch-mismatch",
            "cchStatus is 3 but the status string has 6 characters",
        ),
        (
            "write-before-headers",
            "WriteClient before any response header",
        ),
        ("short-body", "5 bytes short of its Content-Length"),
        ("long-body", "wrote 3 bytes beyond the Content-Length"),
        (
            "vector-headers-without-flag",
            "HSE_REQ_VECTOR_SEND: pszStatus and pszHeaders must both be set with HSE_IO_SEND_HEADERS",
        ),
        (
            "vector-empty-buffer",
            "HSE_REQ_VECTOR_SEND: a memory element with a NULL buffer or a cbSize of 0",
        ),
        (
            "vector-after-final",
            "response data after HSE_REQ_VECTOR_SEND with HSE_IO_FINAL_SEND",
        ),
        (
            "bad-return",
            "returned 7, which is not an HSE_STATUS_* value",
        ),
        (
            "async-no-callback",
            "HSE_IO_ASYNC) without an HSE_REQ_IO_COMPLETION callback",
        ),
        ("no-colon", "header line \"NoColonHere\" has no colon"),
        ("bad-name", "invalid header name in \"Bad Name: x\""),
        (
            "text-after-blank",
            "text after the blank line that ends the headers: \"X-Late: 1\"",
        ),
        (
            "async-twice",
            "WriteClient(HSE_IO_ASYNC) while another asynchronous operation is outstanding",
        ),
        (
            "async-twice",
            "HSE_REQ_TRANSMIT_FILE while another asynchronous operation is outstanding",
        ),
        (
            "async-twice",
            "HSE_REQ_ASYNC_READ_CLIENT while another asynchronous operation is outstanding",
        ),
        (
            "done-while-async",
            "HSE_REQ_DONE_WITH_SESSION while an asynchronous operation is outstanding",
        ),
        (
            "end-while-async",
            "the request ended while an asynchronous operation was outstanding; its completion is dropped",
        ),
    ];
    // One request per kind (a kind may commit several violations).
    let mut kinds: Vec<&str> = cases.iter().map(|(kind, _)| *kind).collect();
    kinds.dedup();
    for kind in &kinds {
        // Raw: some of these responses are deliberately broken (short bodies).
        let request =
            format!("GET /violation/{kind} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let data = common::raw(host.addr, request.as_bytes());
        assert!(
            data.starts_with(b"HTTP/1.1 "),
            "{kind}: {:?}",
            String::from_utf8_lossy(&data)
        );
    }
    // PENDING and never DONE_WITH_SESSION: only the shutdown can tell. The client would
    // wait forever, so send the request and do not wait for an answer.
    let mut s = std::net::TcpStream::connect(host.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /violation/never-done HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .unwrap();
    // It is the request after those above: wait until it has returned PENDING.
    let pending = format!(
        "#{} HttpExtensionProc -> HSE_STATUS_PENDING",
        kinds.len() + 1
    );
    assert!(host.wait_for_output(&pending), "{}", host.output());
    // The after-done violation comes from a thread 50 ms after its request, the dropped
    // completions when the worker gets to them after the request ended.
    assert!(host.wait_for_output("already ended"), "{}", host.output());
    assert!(
        host.wait_for_output("/violation/end-while-async: the request ended while"),
        "{}",
        host.output()
    );
    let stopped = host.stop();
    assert_eq!(
        stopped.status.code(),
        Some(3),
        "--strict exits with 3:\n{}",
        stopped.stderr
    );
    let lines: Vec<&str> = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("CONTRACT VIOLATION"))
        .collect();
    for (kind, message) in cases {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("/violation/{kind}")) && l.contains(message)),
            "no report for {kind} ({message:?}) in:\n{}",
            lines.join("\n")
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/violation/never-done") && l.contains("never came")),
        "{}",
        stopped.stderr
    );
}

#[test]
fn without_strict_violations_do_not_change_the_exit_status() {
    let host = Host::start(&test_extension(), &[]);
    get(host.addr, "/violation/headers-twice");
    let stopped = host.stop();
    assert!(stopped.status.success());
    assert!(
        stopped.stderr.contains("1 contract violation(s)"),
        "{}",
        stopped.stderr
    );
}
