//! A "QueueMetrics" that never stops sending: an endless status line or endless headers.
//! qlship must give up at its bound, at once, rather than read until the HTTP timeout
//! while its memory grows (on a plain-HTTP path anyone can play this server).

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use support::*;

/// Serves every connection with `head` and then `filler` forever (until the client
/// hangs up). Returns the port.
fn endless(head: &'static [u8], filler: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                let _ = conn.write_all(head);
                let chunk = filler.repeat(4096 / filler.len());
                while conn.write_all(&chunk).is_ok() {}
            });
        }
    });
    port
}

fn check_against(port: u16) -> (i32, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "check",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--http-timeout",
        "8",
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "--run-dir",
        dir.path().join("run").to_str().unwrap(),
        dir.path().join("queue_log").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let (code, text) = run_qlship(&args);
    (code, text, started.elapsed())
}

#[test]
fn endless_headers_are_cut_at_their_bound() {
    let port = endless(
        b"HTTP/1.1 200 OK\r\n",
        b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    );
    let (code, text, took) = check_against(port);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("max_headers_size"), "{text}");
    assert!(took < Duration::from_secs(4), "read for {took:?}: {text}");
}

#[test]
fn an_endless_status_line_is_cut_at_its_bound() {
    let port = endless(b"HTTP/1.1 200 ", b"O");
    let (code, text, took) = check_against(port);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("max_status_line_length"), "{text}");
    assert!(took < Duration::from_secs(4), "read for {took:?}: {text}");
}
