//! Flask and Django through the bridge, in-process (real CPython with the test venv, real
//! `HttpExtensionProc`, synthetic ECBs): GET, POST forms (Django with CSRF), JSON,
//! redirects, cookies, 404 and 500, each app wrapped in wsgiref.validate.validator with
//! warnings as errors (tests/apps/frameworks.py). The venv comes from `.ci/setup`
//! (`$ISAPI_WSGI_TEST_VENV`, default target/test-venv).
mod common;
#[path = "support/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;

use synthetic::{Reply, Request, send};

fn setup() -> PathBuf {
    let venv = common::test_venv();
    let dir = synthetic::start_once("frameworks", |dir| {
        format!(
            "[python]\npath = {}\nvenv = {}\n[wsgi]\napp = frameworks:application\nhandler = simple\nlog = {}\n",
            synthetic::apps_dir().display(),
            venv.display(),
            dir.join("wsgi.log").display()
        )
    });
    dir.join("wsgi.log")
}

fn check(reply: &Reply, status: u16, log: &PathBuf) {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(reply.code(), status, "{}\n--- log ---\n{log}", reply.text());
    assert!(
        !log.contains("Warning"),
        "a validator warning was logged:\n{log}"
    );
}

fn cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, value)| {
            let pair = value.split(';').next()?;
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.to_string())
        })
}

#[test]
fn get_and_404() {
    let log = setup();
    for framework in ["flask", "django"] {
        let reply = send(&Request::get(&format!("/{framework}/")));
        check(&reply, 200, &log);
        assert_eq!(reply.text(), format!("{framework} index"));
        let reply = send(&Request::get(&format!("/{framework}/no-such-page")));
        check(&reply, 404, &log);
    }
}

#[test]
fn flask_form_post() {
    let log = setup();
    let reply = send(&Request::post(
        "/flask/form",
        "application/x-www-form-urlencoded",
        b"name=Ann+Lee",
    ));
    check(&reply, 200, &log);
    assert_eq!(reply.text(), "hello Ann Lee from a form");
}

#[test]
fn django_form_post_with_csrf() {
    let log = setup();
    let page = send(&Request::get("/django/form"));
    check(&page, 200, &log);
    let token = cookie(&page, "csrftoken").expect("csrftoken cookie");
    let html = page.text();
    let form_token = html
        .split("value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("token in form");
    let body = format!("csrfmiddlewaretoken={form_token}&name=Ann+Lee");
    let reply = send(
        &Request::post(
            "/django/form",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
        .header("Cookie", &format!("csrftoken={token}")),
    );
    check(&reply, 200, &log);
    assert_eq!(reply.text(), "hello Ann Lee from a form");
    // Without the token Django refuses the POST.
    let refused = send(&Request::post(
        "/django/form",
        "application/x-www-form-urlencoded",
        b"name=Eve",
    ));
    check(&refused, 403, &log);
}

#[test]
fn json_in_and_out() {
    let log = setup();
    for framework in ["flask", "django"] {
        let reply = send(&Request::get(&format!("/{framework}/json")));
        check(&reply, 200, &log);
        assert!(
            reply
                .header("Content-Type")
                .unwrap()
                .starts_with("application/json")
        );
        assert!(
            reply.text().replace(' ', "").contains("\"items\":[1,2,3]"),
            "{}",
            reply.text()
        );
        let reply = send(&Request::post(
            &format!("/{framework}/json"),
            "application/json",
            br#"{"a": [1, "two"]}"#,
        ));
        check(&reply, 200, &log);
        assert!(
            reply
                .text()
                .replace(' ', "")
                .contains(r#""received":{"a":[1,"two"]}"#),
            "{}",
            reply.text()
        );
    }
}

#[test]
fn redirects_use_the_mount_point() {
    let log = setup();
    for framework in ["flask", "django"] {
        let reply = send(&Request::get(&format!("/{framework}/redirect")));
        check(&reply, 302, &log);
        let location = reply.header("Location").expect("Location");
        assert!(
            location.ends_with(&format!("/{framework}/target")),
            "{location}"
        );
        let reply = send(&Request::get(&format!("/{framework}/target")));
        // Flask's request.path is relative to the mount point, Django's is not.
        let expected = if framework == "flask" {
            "/target".to_string()
        } else {
            format!("/{framework}/target")
        };
        assert_eq!(reply.text(), format!("you were redirected to {expected}"));
    }
}

#[test]
fn cookies_round_trip() {
    let log = setup();
    for framework in ["flask", "django"] {
        let reply = send(&Request::get(&format!("/{framework}/cookie-set")));
        check(&reply, 200, &log);
        assert_eq!(cookie(&reply, "flavour").as_deref(), Some("oatmeal"));
        let reply = send(
            &Request::get(&format!("/{framework}/cookie-get"))
                .header("Cookie", "flavour=oatmeal; other=1"),
        );
        assert_eq!(reply.text(), "flavour=oatmeal");
    }
}

#[test]
fn errors_become_the_frameworks_500() {
    let log = setup();
    for framework in ["flask", "django"] {
        let reply = send(&Request::get(&format!("/{framework}/boom")));
        assert_eq!(reply.code(), 500, "{}", reply.text());
        assert!(reply.keep_conn, "a 500 page is a complete response");
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        log.contains("RuntimeError: flask view failed"),
        "Flask logs to wsgi.errors:\n{log}"
    );
}
