//! Health over time on a running qlship: the page, the metrics (read by the strict
//! parser of tests/health/prom_format.rs) and the history across a restart; systemd's
//! notifications read from a socket the test binds; the stall detector against a
//! stand-in that answers every check but never stores.

#[path = "health/html.rs"]
mod html;
#[path = "health/prom_format.rs"]
mod prom_format;
mod support;

use html::figure;
use qlship::health::history::History;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::fake_qm::Fault;
use support::*;

fn run_dir(env: &Env) -> PathBuf {
    env.dir.path().join("run")
}

/// Waits until the metrics file parses and `ok` holds.
fn metrics_until(
    env: &Env,
    limit: Duration,
    ok: impl Fn(&prom_format::Exposition) -> bool,
) -> prom_format::Exposition {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(run_dir(env).join("qlship.prom")) {
            let e = prom_format::parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
            if ok(&e) {
                return e;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never got there; logs:\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn single(env: &Env) -> [(&'static str, String); 2] {
    [
        (
            "target",
            format!(
                "http://127.0.0.1:{}/queuemetrics/jsonQLoaderApi.do",
                env.qm.port()
            ),
        ),
        ("token", env.token.clone()),
    ]
}

fn value(e: &prom_format::Exposition, name: &str, labels: &[(&str, String)]) -> Option<f64> {
    let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    e.value(name, &l)
}

fn acked_in_history(env: &Env) -> u64 {
    let bytes = std::fs::read(run_dir(env).join("history.bin")).expect("history.bin");
    let h = History::decode(&bytes).expect("a history file");
    assert_eq!(h.series.len(), 1);
    let now = qlship::health::now_unix();
    h.series[0]
        .window(now)
        .iter()
        .flatten()
        .map(|p| p.acked)
        .sum()
}

#[test]
fn a_running_daemon_writes_the_page_and_metrics_and_its_history_survives_a_restart() {
    let env = Env::new();
    env.append("");
    let labels = single(&env);
    let daemon = env.spawn(&[]);
    // The first status is taken before any row: the history counts every row after.
    let before = metrics_until(&env, Duration::from_secs(20), |_| true);
    let fsyncs_before = before.value("qlship_fsyncs_total", &[]).unwrap();
    let (text, _) = rows(0..50);
    env.append(&text);
    env.wait_for_rows(50, Duration::from_secs(20));
    let e = metrics_until(&env, Duration::from_secs(30), |e| {
        value(e, "qlship_rows_acknowledged_total", &labels) == Some(50.0)
    });
    assert_eq!(e.value("qlship_rows_read_total", &[]), Some(50.0));
    assert_eq!(value(&e, "qlship_backlog_rows", &labels), Some(0.0));
    assert_eq!(value(&e, "qlship_lag_seconds", &labels), Some(0.0));
    assert_eq!(value(&e, "qlship_up", &labels), Some(1.0));
    assert_eq!(value(&e, "qlship_stalled", &labels), Some(0.0));
    assert_eq!(value(&e, "qlship_resyncs_total", &labels), Some(0.0));
    assert_eq!(e.value("qlship_spool_rows", &[]), Some(0.0));
    let req = |cmd: &str| {
        let mut l = labels.to_vec();
        l.push(("command", cmd.into()));
        l.push(("outcome", "ok".into()));
        value(&e, "qlship_requests_total", &l)
    };
    assert_eq!(req("insertAll"), Some(env.qm.commands("insertAll") as f64));
    assert_eq!(req("checkHWM"), Some(env.qm.commands("checkHWM") as f64));
    // At least the batch's in-flight mark and its acknowledgement.
    assert!(e.value("qlship_fsyncs_total", &[]).unwrap() >= fsyncs_before + 2.0);
    if Path::new("/proc/self/io").exists() {
        assert!(e.value("qlship_storage_write_bytes_total", &[]).unwrap() > 0.0);
    }
    let at = value(&e, "qlship_last_success_timestamp_seconds", &labels).unwrap();
    assert!((qlship::health::now_unix() as f64 - at).abs() < 60.0);

    let html = std::fs::read_to_string(run_dir(&env).join("status.html")).unwrap();
    assert_eq!(figure(&html, "rows-read"), "50");
    assert_eq!(figure(&html, "t0-backlog-rows"), "0 rows");
    assert!(figure(&html, "t0-acked").contains("50 since start, 50 in total"));
    assert!(figure(&html, "t0-state").starts_with("up since "), "{html}");

    stop(daemon);
    assert_eq!(acked_in_history(&env), 50);
    let html = std::fs::read_to_string(run_dir(&env).join("status.html")).unwrap();
    assert!(figure(&html, "stopped").starts_with("qlship stopped at "));
    assert!(
        !run_dir(&env).join("qlship.prom").exists(),
        "no stale metrics"
    );

    let daemon = env.spawn(&[]);
    metrics_until(&env, Duration::from_secs(20), |_| true);
    let (text, _) = rows(50..80);
    env.append(&text);
    env.wait_for_rows(80, Duration::from_secs(20));
    metrics_until(&env, Duration::from_secs(30), |e| {
        value(e, "qlship_rows_acknowledged_total", &labels) == Some(80.0)
    });
    stop(daemon);
    assert_eq!(
        acked_in_history(&env),
        80,
        "the first run's points are kept"
    );
}

/// A qlship with extra environment variables, killed if the test fails.
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_with_env(env: &Env, vars: &[(&str, &str)], log: &str) -> Run {
    let log = std::fs::File::create(env.dir.path().join(log)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qlship"));
    cmd.args(env.args(&[]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    // The systemd unit's UMask=0077.
    // SAFETY: umask is async-signal-safe; nothing else runs in the child before exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    Run(cmd.spawn().unwrap())
}

/// Every datagram that arrives within `limit`, or until `enough` holds.
fn listen(sock: &UnixDatagram, limit: Duration, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !enough(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping_on_its_socket() {
    let env = Env::new();
    env.append("");
    let path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut run = spawn_with_env(
        &env,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
        "notify.log",
    );
    let got = listen(&sock, Duration::from_secs(20), |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 5
    });
    let logs = || std::fs::read_to_string(env.dir.path().join("notify.log")).unwrap();
    assert!(
        got.first()
            .is_some_and(|m| m.lines().next() == Some("READY=1")),
        "READY=1 comes first: {got:?}\n{}",
        logs()
    );
    assert!(
        got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 5,
        "{got:?}"
    );
    let (text, _) = rows(0..10);
    env.append(&text);
    env.wait_for_rows(10, Duration::from_secs(20));
    let got = listen(&sock, Duration::from_secs(20), |g| {
        g.iter().any(|m| {
            m.starts_with(
                "STATUS=1 of 1 targets up; backlog 0 rows; 10 rows acknowledged since start",
            )
        })
    });
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=1 of 1 targets up; backlog 0 rows; 10 rows")),
        "{got:?}\n{}",
        logs()
    );
    // Under the unit's umask the web server and node_exporter can still read them.
    for name in ["status.html", "qlship.prom", "status.json"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run_dir(&env).join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }
    signal(&run.0, libc::SIGTERM);
    let got = listen(&sock, Duration::from_secs(5), |g| {
        g.iter().any(|m| m == "STOPPING=1")
    });
    assert!(got.iter().any(|m| m == "STOPPING=1"), "{got:?}");
    assert!(run.0.wait().unwrap().success());
}

#[test]
fn an_abstract_notify_socket_works_and_a_watchdog_meant_for_another_pid_is_ignored() {
    use std::os::linux::net::SocketAddrExt;
    let env = Env::new();
    env.append("");
    let name = format!("qlship-test-{}-{:?}", std::process::id(), Instant::now());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let _run = spawn_with_env(
        &env,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
        "abstract.log",
    );
    let got = listen(&sock, Duration::from_secs(3), |_| false);
    assert!(
        got.iter().any(|m| m.starts_with("READY=1")),
        "{got:?}\n{}",
        std::fs::read_to_string(env.dir.path().join("abstract.log")).unwrap()
    );
    assert!(got.iter().any(|m| m.starts_with("STATUS=")), "{got:?}");
    assert!(!got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
}

#[test]
fn a_target_that_answers_but_never_acknowledges_is_reported_stalled() {
    let env = Env::new();
    env.append("");
    let labels = single(&env);
    // Every check and heartbeat is answered; every insertAll is held without an answer
    // (a server wedged on its database). The uploader waits for it, and nothing
    // counts as an error for a minute: before the stall detector, `status` said "up".
    env.qm.fail("insertAll", Fault::Hang, 1000);
    let _daemon = env.spawn(&[
        "--http-timeout",
        "60",
        "--heartbeat",
        "1",
        "--stall-after",
        "2",
    ]);
    metrics_until(&env, Duration::from_secs(20), |e| {
        value(e, "qlship_up", &labels) == Some(1.0)
    });
    let (text, _) = rows(0..10);
    env.append(&text);
    let e = metrics_until(&env, Duration::from_secs(30), |e| {
        value(e, "qlship_stalled", &labels) == Some(1.0)
    });
    assert_eq!(
        value(&e, "qlship_up", &labels),
        Some(1.0),
        "answering, not down"
    );
    assert_eq!(value(&e, "qlship_backlog_rows", &labels), Some(10.0));
    let (code, text) = run_qlship(&[
        "status".into(),
        "--run-dir".into(),
        run_dir(&env).to_str().unwrap().into(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(": up\n"), "{text}");
    assert!(
        text.contains("STALLED: 10 rows waiting, none acknowledged for "),
        "{text}"
    );
    let logs = env.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("stalled:")).collect();
    assert_eq!(lines.len(), 1, "one log line: {logs}");
    assert!(
        lines[0].contains("server: stalled: 10 rows waiting and none acknowledged for"),
        "{logs}"
    );
    let html = std::fs::read_to_string(run_dir(&env).join("status.html")).unwrap();
    assert!(figure(&html, "t0-state").starts_with("stalled: "));
}

#[test]
fn feedback_actions_are_counted_by_result() {
    let env = Env::new();
    env.append("");
    let labels = single(&env);
    let ami = support::fake_ami::FakeAmi::start("admin", "amp111");
    let login = "Action: Login\nUsername: admin\nSecret: amp111";
    let add = "Action: QueueAdd\nQueue: q1\nInterface: SIP/7";
    // Runs; then fails on the PBX (already a member); then refused by the policy.
    env.qm
        .push_actions("P001", "1", "127.0.0.1", ami.port(), &[login, add]);
    env.qm
        .push_actions("P001", "2", "127.0.0.1", ami.port(), &[login, add]);
    env.qm.push_actions(
        "P001",
        "3",
        "127.0.0.1",
        ami.port(),
        &[login, "Action: Command\nCommand: core stop now"],
    );
    let _daemon = env.spawn(&["--feedback", "0.2", "--ami-timeout", "1"]);
    let result = |e: &prom_format::Exposition, r: &str| {
        let mut l = labels.to_vec();
        l.push(("result", r.into()));
        value(e, "qlship_feedback_actions_total", &l)
    };
    let e = metrics_until(&env, Duration::from_secs(30), |e| {
        ["ok", "failed", "refused"]
            .iter()
            .all(|r| result(e, r) == Some(1.0))
    });
    assert_eq!(result(&e, "interrupted"), Some(0.0));
    let mut l = labels.to_vec();
    l.push(("command", "checkFb".into()));
    l.push(("outcome", "ok".into()));
    assert!(value(&e, "qlship_requests_total", &l).unwrap() >= 2.0);
}
