//! The API's manners: errors in its own shape for unknown routes and bad bodies, bodies
//! bounded, a stalled client holding up nobody, and each request logged with who sent it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// One HTTP/1.1 request on the socket; the status and the body.
fn request(d: &Daemon, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(10 * SEC)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: rcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A body the daemon refuses early may not be read whole: a write error is its answer.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn errors_come_in_the_apis_shape_and_bodies_are_bounded() {
    let d = Daemon::start();
    let (code, body) = request(&d, "GET", "/v1/nope", b"");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("\"error\":\"no such route: GET /v1/nope\""),
        "{body}"
    );

    let (code, body) = request(&d, "POST", "/v1/images/pull", b"{\"image\": ");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (code, body) = request(&d, "POST", "/v1/images/pull", b"[1, 2]");
    assert_eq!(code, 400, "{body}");

    let big = format!("{{\"image\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (code, _) = request(&d, "POST", "/v1/images/pull", big.as_bytes());
    assert_eq!(code, 413);

    // Still answering, and each request was logged with its sender's uid.
    assert!(d.rctl(&["reload"]).status.success());
    wait_until(5 * SEC, "the request logged", || {
        d.log().lines().any(|l| {
            l.contains("api request") && l.contains("uid=Some(0)") && l.contains("path=/v1/reload")
        })
    });
}

#[test]
fn a_stalled_client_holds_up_nobody() {
    let d = Daemon::start();
    // Half a request, then nothing: the connection stays open.
    let mut stalled = UnixStream::connect(&d.socket).unwrap();
    stalled
        .write_all(b"POST /v1/images/pull HTTP/1.1\r\nHost: rcd\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(UnixStream::connect(&d.socket).unwrap());
    }
    let began = Instant::now();
    for _ in 0..5 {
        assert!(d.rctl(&["list"]).status.success());
    }
    assert!(began.elapsed() < 5 * SEC, "{:?}", began.elapsed());
    drop(stalled);
    drop(idle);
}
