//! Response bodies beyond a list of bytes, end to end through the real `isapi-host
//! --strict` with the built library, for both handlers: `wsgi.file_wrapper` around a real
//! file (sent by the server with HSE_REQ_TRANSMIT_FILE) and around other objects (iterated),
//! a stream of server-sent events that must reach the client event by event, and clients
//! that leave in the middle of a response. The app is tests/apps/testapp.py's /raw/ routes
//! (unvalidated: wsgiref's validator wraps the iterable, which hides the file wrapper).
mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Client, Site};

const HANDLERS: [&str; 2] = ["simple", "threadpool"];

fn site(name: &str, handler: &str, extra: &str) -> Site {
    Site::new(
        &format!("{name}-{handler}"),
        &format!(
            "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\nhandler = {handler}\n{extra}"
        ),
    )
}

/// What the last file the app served saw: (read() calls, close() called).
fn file_report(client: &mut Client) -> (u64, bool) {
    client.send(b"GET /raw/file-report HTTP/1.1\r\nHost: x\r\n\r\n");
    let report = client.response(false).text();
    let reads = report
        .split("\"reads\": ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("file report: {report}"));
    (reads, report.contains("\"closed\": true"))
}

#[test]
fn file_wrapper_sends_a_real_file_with_transmit_file_and_iterates_anything_else() {
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for handler in HANDLERS {
        let site = site("file-wrapper", handler, "");
        let file = site.dir.join("content.bin");
        std::fs::write(&file, &content).unwrap();
        let path = file.display().to_string();
        let host = site.start(&["--trace"]);
        let mut client = Client::connect(host.addr);
        let mut get = |target: String| {
            client.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            let response = client.response(false);
            (response, file_report(&mut client))
        };

        // The whole file: exact bytes, Content-Length added from the file's size, and not
        // one read() in Python.
        let (r, report) = get(format!("/raw/file?path={path}"));
        assert_eq!(r.status, 200, "{handler}");
        assert_eq!(r.header("Content-Length"), Some("300000"), "{handler}");
        assert!(
            r.body == content,
            "{handler}: {} bytes differ",
            r.body.len()
        );
        assert_eq!(report, (0, true), "{handler}: (reads, closed)");

        // From where the app left the file, to its end.
        let (r, report) = get(format!("/raw/file?path={path}&offset=1000"));
        assert_eq!(r.header("Content-Length"), Some("299000"), "{handler}");
        assert!(r.body[..] == content[1000..], "{handler}");
        assert_eq!(report, (0, true), "{handler}");

        // The app's Content-Length: exactly that many bytes, and the connection goes on.
        let (r, report) = get(format!("/raw/file?path={path}&offset=1000&length=5000"));
        assert_eq!(r.header("Content-Length"), Some("5000"), "{handler}");
        assert!(r.body[..] == content[1000..6000], "{handler}");
        assert_eq!(report, (0, true), "{handler}");

        // After write(): the file is the rest of a chunked body.
        let (r, report) = get(format!("/raw/file?path={path}&offset=299990&write=1"));
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"), "{handler}");
        let mut expected = b"prefix;".to_vec();
        expected.extend_from_slice(&content[299_990..]);
        assert_eq!(r.body, expected, "{handler}");
        assert_eq!(report, (0, true), "{handler}");

        // Not a file (a BytesIO): read in blksize blocks, closed.
        let (r, report) = get(format!("/raw/file?path={path}&bytes=1&offset=7"));
        assert!(r.body[..] == content[7..], "{handler}");
        assert!(
            report.0 >= 5 && report.1,
            "{handler}: (reads, closed) {report:?}"
        );

        // HEAD: the length, no body, no file bytes.
        client.send(format!("HEAD /raw/file?path={path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = client.response(true);
        assert_eq!(r.header("Content-Length"), Some("300000"), "{handler}");

        // An HTTP/1.0 client, which gets the length too.
        let data = common::raw(
            host.addr,
            format!("GET /raw/file?path={path}&offset=123 HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let (r, used) = common::parse_response(&data, false).expect("a response");
        assert_eq!(r.header("Content-Length"), Some("299877"), "{handler}");
        assert!(
            r.body[..] == content[123..] && used == data.len(),
            "{handler}"
        );

        // The server was asked for each range (offset, length) exactly: the host's trace
        // (read from its output pipe by a thread of ours: it may lag behind the responses).
        for range in [
            "offset 0, 300000 bytes, flags 0x1",
            "offset 1000, 299000 bytes, flags 0x1",
            "offset 1000, 5000 bytes, flags 0x1",
            "offset 299990, 10 bytes, flags 0x1",
            "offset 123, 299877 bytes, flags 0x1",
        ] {
            assert!(
                host.wait_for_output(range),
                "{handler}: no TRANSMIT_FILE of {range}"
            );
        }
        assert!(
            host.output()
                .contains("ServerSupportFunction(HSE_REQ_TRANSMIT_FILE)(hFile "),
            "{handler}"
        );
        drop(client);
        site.finish(host);
    }
}

#[test]
fn a_content_length_longer_than_the_file_sends_the_file_and_closes() {
    for handler in HANDLERS {
        let site = site("file-short", handler, "");
        let file = site.dir.join("ten.bin");
        std::fs::write(&file, b"0123456789").unwrap();
        let host = site.start(&[]);
        let request = format!(
            "GET /raw/file?path={}&length=15 HTTP/1.1\r\nHost: x\r\n\r\n",
            file.display()
        );
        let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let data = common::read_to_close(&mut stream);
        let text = String::from_utf8_lossy(&data);
        assert!(
            text.contains("Content-Length: 15\r\n") && text.ends_with("\r\n\r\n0123456789"),
            "{handler}: {text}"
        );
        assert!(
            site.wait_for_log("ended after 10 of the 15 bytes"),
            "{handler}: {}",
            site.log()
        );
        site.finish(host);
    }
}

#[test]
fn server_sent_events_reach_the_client_one_by_one() {
    for handler in HANDLERS {
        let site = site("events", handler, "");
        let host = site.start(&[]);
        let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let key = format!("k{handler}");
        stream
            .write_all(format!("GET /raw/events?{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut received = Vec::new();
        for n in 1..=3 {
            // Event n must arrive while the app waits for the release of event n + 1: it
            // is not held back by any buffer.
            let expected = format!("data: event {n}\n\n");
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&received).contains(&expected) {
                let got = stream.read(&mut buf).unwrap_or_else(|e| {
                    panic!(
                        "{handler}: event {n} never came ({e}); got {:?}",
                        String::from_utf8_lossy(&received)
                    )
                });
                assert!(got > 0, "{handler}: closed before event {n}");
                received.extend_from_slice(&buf[..got]);
            }
            if n < 3 {
                let released = common::get(host.addr, &format!("/raw/release?{key}"));
                assert_eq!(released.text(), "released", "{handler}");
            }
        }
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(
            text.contains("Content-Type: text/event-stream")
                && text.contains("Transfer-Encoding: chunked"),
            "{handler}: {text}"
        );
        assert!(!text.contains("never released"), "{handler}: {text}");
        site.finish(host);
    }
}

#[test]
fn clients_that_leave_mid_response_stop_it_at_once_with_one_log_line() {
    for handler in HANDLERS {
        // One thread of each kind: the request after a disconnect can only be served once
        // the aborted one has let go of it.
        let site = site("leave", handler, "threads = 1\n");
        let host = site.start(&["--threads", "1"]);
        let closed = || common::get(host.addr, "/raw/closed-count?forever").text();
        let leaves = 20;
        for n in 1..=leaves {
            let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
                .write_all(b"GET /raw/forever HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut some = vec![0u8; 100_000];
            stream.read_exact(&mut some).unwrap();
            drop(stream);
            // The iteration stopped and close() ran; the one worker serves the next request.
            let deadline = Instant::now() + Duration::from_secs(20);
            while closed() != n.to_string() {
                assert!(
                    Instant::now() < deadline,
                    "{handler}: close() not called after disconnect {n}: {}",
                    closed()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let log = site.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("response aborted"))
            .collect();
        assert!(
            lines.len() == 1
                && lines[0]
                    .contains("GET /raw/forever: response aborted: writing the response failed")
                && lines[0]
                    .contains("(1 since the last report, 1 in all; at most one line a minute)"),
            "{handler}: {lines:#?}"
        );
        site.finish(host);
    }
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

#[test]
fn a_large_upload_read_in_pieces_never_piles_up_in_memory() {
    let mib = 96u64;
    for handler in HANDLERS {
        let site = site("upload", handler, "max_body = 0\n");
        let host = site.start(&[]);
        let mut client = Client::connect(host.addr);
        client.send(b"POST /raw/drain?65536 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nwarm!");
        assert_eq!(client.response(false).text(), "5", "{handler}");
        let before = memory_kib(host.pid(), "VmRSS:");
        // 96 MiB; the host reads ahead 48 KiB as IIS does, so the app's 64 KiB reads never
        // line up with what arrives.
        client.send(
            format!(
                "POST /raw/drain?65536 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                mib << 20
            )
            .as_bytes(),
        );
        let piece = vec![b'u'; 1 << 20];
        for _ in 0..mib {
            client.send(&piece);
        }
        assert_eq!(
            client.response(false).text(),
            (mib << 20).to_string(),
            "{handler}"
        );
        let peak = memory_kib(host.pid(), "VmHWM:");
        assert!(
            peak < before + 16 * 1024,
            "{handler}: resident {before} KiB before, peak {peak} KiB while {mib} MiB went through"
        );
        drop(client);
        site.finish(host);
    }
}
