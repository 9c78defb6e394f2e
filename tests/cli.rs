//! The command line an operator meets: exact messages and exit codes.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn qlship(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qlship"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let (code, out, _) = qlship(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("qlship {}\n", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = qlship(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("usage: qlship [-h HOST]"), "{out}");
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_the_culprit() {
    assert_eq!(
        qlship(&["-p", "http"]),
        (
            2,
            String::new(),
            "qlship: -p: \"http\" is not a whole number\n".into()
        )
    );
    assert_eq!(
        qlship(&["--bogus"]),
        (
            2,
            String::new(),
            "qlship: unknown option --bogus (see --help)\n".into()
        )
    );
    assert_eq!(
        qlship(&["--heartbeat", "soon"]),
        (
            2,
            String::new(),
            "qlship: --heartbeat: \"soon\" is not a number of seconds\n".into()
        )
    );
}

#[test]
fn config_file_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wqloaderd");
    std::fs::write(&cfg, "HTTPHOST=qm\nHTTPPORT=80a\n").unwrap();
    let c = cfg.to_str().unwrap();
    let (code, _, err) = qlship(&["--config", c]);
    assert_eq!(
        (code, err),
        (
            2,
            format!("qlship: {c}:2 HTTPPORT: \"80a\" is not a whole number\n")
        )
    );
    std::fs::write(&cfg, "# comment\nQMUSR=x\n").unwrap();
    let (code, _, err) = qlship(&["--config", c]);
    assert_eq!(
        (code, err),
        (2, format!("qlship: {c}:2: unknown key QMUSR\n"))
    );
    let (code, _, err) = qlship(&["--config", "/nonexistent/qlship.conf"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("qlship: --config /nonexistent/qlship.conf: cannot read: "),
        "{err}"
    );
}

#[test]
fn an_unwritable_state_dir_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let ql = dir.path().join("queue_log");
    let (code, _, err) = qlship(&[
        "--state-dir",
        not_a_dir.to_str().unwrap(),
        "--drain",
        ql.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--state-dir: state dir") && err.contains("must be writable"),
        "{err}"
    );
}

#[test]
fn a_missing_queue_log_is_waited_for() {
    let env = Env::new();
    let child = env.spawn(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    let (text, expected) = rows(0..20);
    env.append(&text);
    env.wait_for_rows(20, Duration::from_secs(20));
    stop(child);
    env.assert_exact(&expected);
    assert!(env.logs().contains("waiting for"), "{}", env.logs());
}

#[test]
fn a_queue_log_that_is_a_directory_or_in_no_directory_stops_the_daemon_at_start() {
    let mut env = Env::new();
    let dir = env.dir.path().to_owned();
    for (ql, want) in [
        (
            dir.clone(),
            format!(
                "QUEUE_LOG {} is a directory: give the queue_log file itself (e.g. {})",
                dir.display(),
                dir.join("queue_log").display()
            ),
        ),
        (
            dir.join("asterisk/queue_log"),
            format!(
                "QUEUE_LOG {}: the directory {} does not exist",
                dir.join("asterisk/queue_log").display(),
                dir.join("asterisk").display()
            ),
        ),
    ] {
        env.ql = ql;
        // A daemon that does not stop would hang here: timeout(1) turns that into 124.
        let out = Command::new("timeout")
            .arg("10")
            .arg(env!("CARGO_BIN_EXE_qlship"))
            .args(env.args(&[]))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&want), "{err}");
        // `check` says the same and fails.
        let mut a = vec!["check".to_string()];
        a.extend(env.args(&[]));
        let (code, text) = run_qlship(&a);
        assert_eq!(code, 1, "{text}");
        assert!(text.starts_with(&want), "{text}");
        assert!(
            text.contains("\nOK: "),
            "the server is still checked: {text}"
        );
    }
}

#[test]
fn check_fails_when_the_queue_log_is_not_there_yet() {
    let env = Env::new();
    let mut a = vec!["check".to_string()];
    a.extend(env.args(&[]));
    let (code, text) = run_qlship(&a);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "QUEUE_LOG {} does not exist (yet): the daemon would wait for it to appear",
            env.ql.display()
        )),
        "{text}"
    );
    env.append("");
    let (code, text) = run_qlship(&a);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("QUEUE_LOG"), "{text}");
}

#[derive(miniserde::Deserialize, Debug)]
struct NotRunning {
    running: bool,
    reason: String,
    last_pid: Option<u32>,
}

#[test]
fn status_json_is_json_even_when_no_daemon_runs() {
    let env = Env::new();
    let run_dir = env.dir.path().join("run");
    let status = || qlship(&["status", "--json", "--run-dir", run_dir.to_str().unwrap()]);
    let (code, out, _) = status();
    assert_eq!(code, 3, "{out}");
    let said: NotRunning = miniserde::json::from_str(out.trim()).expect(&out);
    assert!(!said.running && said.last_pid.is_none(), "{said:?}");
    assert!(said.reason.starts_with("no status in "), "{said:?}");

    // A status file left behind by a daemon that is gone.
    std::fs::create_dir_all(&run_dir).unwrap();
    let stale = qlship::status::Snapshot {
        pid: 999_999_999,
        written: 1,
        ..Default::default()
    };
    std::fs::write(run_dir.join("status.json"), qlship::status::to_json(&stale)).unwrap();
    let (code, out, _) = status();
    assert_eq!(code, 3, "{out}");
    let said: NotRunning = miniserde::json::from_str(out.trim()).expect(&out);
    assert_eq!(
        (said.running, said.last_pid),
        (false, Some(999_999_999)),
        "{said:?}"
    );
}

#[test]
fn heartbeats_are_sent_and_a_failed_one_blocks_nothing() {
    let env = Env::new();
    env.qm.fail("checkHb", support::fake_qm::Fault::Http500, 1);
    let mut args = env.args(&[]);
    // The harness turns heartbeats off; the last flag wins.
    let at = args.len() - 2;
    args.splice(at..at, ["--heartbeat".to_string(), "1".to_string()]);
    let child = Command::new(env!("CARGO_BIN_EXE_qlship"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (text, expected) = rows(0..10);
    env.append(&text);
    env.wait_for_rows(10, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2500));
    stop(child);
    assert!(env.qm.commands("checkHb") >= 2);
    env.assert_exact(&expected);
}

#[test]
fn a_full_spool_pauses_reading_and_resumes_without_loss() {
    let env = Env::new();
    let (text, mut expected) = rows(0..10);
    env.append(&text);
    assert!(env.drain(&[]).success());
    env.qm.stop();
    let (text, more) = rows(10..5000);
    env.append(&text);
    expected.extend(more);
    let child = env.spawn(&["--spool-max", "64K"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(env.logs().contains("spool full"), "{}", env.logs());
    env.qm.resume();
    env.wait_for_rows(5000, Duration::from_secs(60));
    stop(child);
    env.assert_exact(&expected);
    assert!(env.logs().contains("reading resumed"), "{}", env.logs());
}

#[test]
fn pid_file_is_written_and_removed() {
    let env = Env::new();
    let pid_file = env.dir.path().join("qlship.pid");
    let child = env.spawn(&["--pid-file", pid_file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", child.id())
    );
    stop(child);
    assert!(!pid_file.exists());
}
