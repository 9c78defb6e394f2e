use super::*;

fn run(args: &[&str]) -> Result<Settings, ConfigError> {
    match parse_args(args.iter().map(|s| s.to_string()))? {
        Command::Run(s) => Ok(*s),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wqloaderd_command_line_is_accepted() {
    let s = run(&[
        "-h",
        "qm.example",
        "-p",
        "8081",
        "-c",
        "qm",
        "-u",
        "u",
        "-w",
        "pw",
        "/tmp/ql",
        "P001",
        "/tmp/act.log",
    ])
    .unwrap();
    assert_eq!(s.host, "qm.example");
    assert_eq!(s.port, 8081);
    assert_eq!(s.url(), "http://qm.example:8081/qm/jsonQLoaderApi.do");
    assert_eq!((s.user.as_str(), s.password.expose()), ("u", "pw"));
    assert_eq!(s.queue_log, PathBuf::from("/tmp/ql"));
    assert_eq!(s.token, "P001");
    assert_eq!(s.activity_log, Some(PathBuf::from("/tmp/act.log")));
}

#[test]
fn defaults_follow_the_contract() {
    let s = run(&[]).unwrap();
    assert_eq!(
        s.url(),
        "http://127.0.0.1:8080/queuemetrics/jsonQLoaderApi.do"
    );
    assert_eq!(
        (s.user.as_str(), s.password.expose()),
        ("webqloader", "qloader")
    );
    assert_eq!(s.queue_log, PathBuf::from("/var/log/asterisk/queue_log"));
    assert_eq!(s.token, "");
    assert_eq!(s.activity_log, None);
    assert_eq!(s.ram_budget, 1 << 20);
    assert_eq!(s.heartbeat, Duration::from_secs(900));
    assert_eq!(s.feedback, Duration::ZERO);
    assert_eq!(run(&["ql", "-"]).unwrap().token, "");
}

#[test]
fn config_file_keys_and_precedence() {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // It holds a password: a private directory (0700, removed when the test ends)
    // and a file only its owner can read, as on a real box.
    let dir = tempfile::tempdir().unwrap();
    // tempfile leaves the directory to the umask (0755 here).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir_mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o077, 0, "{dir_mode:o}");
    let f = dir.path().join("wqloaderd");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&f)
        .unwrap()
        .write_all(b"# old sysconfig\nHTTPHOST=10.1.1.1\nHTTPPORT=\"8082\"\nQMPASS='s3cret'\nPARTITION=P002\nLOCKFILE=/var/lock/x\nexport RAM_BUDGET=2M # comment\n")
        .unwrap();
    let f = f.to_str().unwrap();
    let s = run(&["--config", f, "-p", "9000"]).unwrap();
    assert_eq!(s.host, "10.1.1.1");
    assert_eq!(s.port, 9000);
    assert_eq!(s.password.expose(), "s3cret");
    assert_eq!(s.token, "P002");
    assert_eq!(s.ram_budget, 2 << 20);
}

#[test]
fn errors_name_the_culprit() {
    assert_eq!(
        run(&["-p", "http"]).unwrap_err().0,
        "-p: \"http\" is not a whole number"
    );
    assert_eq!(
        run(&["-p", "70000"]).unwrap_err().0,
        "-p: port 70000 is out of range 1-65535"
    );
    assert_eq!(
        run(&["--frobnicate"]).unwrap_err().0,
        "unknown option --frobnicate (see --help)"
    );
    assert_eq!(run(&["-h"]).unwrap_err().0, "-h needs a value (see --help)");
    assert_eq!(
        run(&["--ram-budget", "lots"]).unwrap_err().0,
        "--ram-budget: \"lots\" is not a size (e.g. 512K, 4M)"
    );
    assert_eq!(
        parse_config_text("HTTPHOST=a\nHTTPHOTS=b\n", "/etc/sysconfig/qlship")
            .unwrap_err()
            .0,
        "/etc/sysconfig/qlship:2: unknown key HTTPHOTS"
    );
    assert_eq!(
        run(&["a", "b", "c", "d"]).unwrap_err().0,
        "too many arguments: \"d\" (expected QUEUE_LOG [TOKEN [ACTIVITY_LOG]])"
    );
}

#[test]
fn empty_paths_are_refused_not_taken_as_the_working_directory() {
    for (args, expected) in [
        (
            &["--state-dir", ""][..],
            "--state-dir: an empty path is not allowed",
        ),
        (
            &["--state-dir= "],
            "--state-dir: an empty path is not allowed",
        ),
        (
            &["--run-dir", ""],
            "--run-dir: an empty path is not allowed",
        ),
        (&[""], "argument queuelog: an empty path is not allowed"),
    ] {
        assert_eq!(run(args).unwrap_err().0, expected, "{args:?}");
    }
    let dir = std::env::temp_dir().join(format!("qlship-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("sysconfig");
    std::fs::write(&f, "HTTPHOST=a\nSTATE_DIR=\"\"\n").unwrap();
    let f = f.to_str().unwrap();
    assert_eq!(
        run(&["--config", f]).unwrap_err().0,
        format!("{f}:2 STATE_DIR: an empty path is not allowed")
    );
    assert_eq!(
        parse_args(["status", "--run-dir", ""].map(String::from))
            .unwrap_err()
            .0,
        "qlship status: an empty --run-dir is not allowed"
    );
    // LOGFILE and PIDFILE keep their documented meaning: empty is "none".
    assert_eq!(run(&["--pid-file", ""]).unwrap().pid_file, None);
}

#[test]
fn verbs() {
    assert_eq!(
        parse_args(["status".to_string()]).unwrap(),
        Command::Status {
            run_dir: PathBuf::from("/run/qlship"),
            json: false
        }
    );
    assert_eq!(
        parse_args(["status", "--run-dir", "/tmp/r", "--json"].map(String::from)).unwrap(),
        Command::Status {
            run_dir: PathBuf::from("/tmp/r"),
            json: true
        }
    );
    match parse_args(["check", "-p", "9", "ql"].map(String::from)).unwrap() {
        Command::Check(s) => assert_eq!(s.port, 9),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_args(["status", "--bogus"].map(String::from))
            .unwrap_err()
            .0,
        "qlship status: unknown argument --bogus (takes --run-dir DIR, --config FILE, --json)"
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("256K"), Some(256 * 1024));
    assert_eq!(parse_size("1M"), Some(1 << 20));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("M"), None);
    assert_eq!(parse_size("-1K"), None);
}
