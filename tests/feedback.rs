//! Feedback actions (checkFb) against the strict AMI stand-in: run once, reported once,
//! refused when the policy says no, bounded by timeouts, and never in the way of rows.

mod support;

use std::time::{Duration, Instant};
use support::fake_ami::FakeAmi;
use support::fake_qm::FbReport;
use support::*;

const LOGIN: &str = "Action: Login\nUsername: admin\nSecret: amp111";

fn fb_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec!["--feedback", "0.2", "--ami-timeout", "1"];
    a.extend_from_slice(extra);
    a
}

fn only(reports: Vec<FbReport>) -> (String, String) {
    assert_eq!(reports.len(), 1, "{reports:?}");
    (reports[0].status.clone(), reports[0].result.clone())
}

#[test]
fn queue_actions_run_once_change_the_pbx_and_are_reported_once() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    env.qm.push_actions(
        "P001",
        "101",
        "127.0.0.1",
        ami.port(),
        &[
            LOGIN,
            "Action: QueueAdd\nQueue: q-support\nInterface: SIP/101\nMemberName: Agent/101",
            "Action: QueuePause\nQueue: q-support\nInterface: SIP/101\nPaused: true\nReason: lunch",
        ],
    );
    let daemon = env.spawn(&fb_args(&[]));
    env.wait_fb_reports("101", Duration::from_secs(10));
    // QueueMetrics keeps offering the container until it has the result; give it a
    // few more polls to be run or reported twice.
    std::thread::sleep(Duration::from_millis(1000));
    stop(daemon);
    let reports: Vec<FbReport> = env
        .qm
        .fb_results()
        .into_iter()
        .filter(|r| r.id == "101")
        .collect();
    assert_eq!(
        only(reports),
        (
            "OK".into(),
            "Login: Authentication accepted; QueueAdd: Added interface to queue; QueuePause: Interface paused successfully".into()
        )
    );
    assert_eq!(
        ami.members("q-support"),
        vec![("SIP/101".to_string(), true)]
    );
    assert_eq!(ami.count("QueueAdd"), 1);
    assert_eq!(ami.count("Logoff"), 1, "closes with Logoff");
    assert_eq!(ami.violations(), Vec::<String>::new());
    assert_eq!(env.qm.violations(), Vec::<String>::new());
    assert!(
        !env.logs().contains("amp111"),
        "the AMI secret leaked into the log"
    );
}

#[test]
fn a_failed_action_is_reported_ko_with_asterisks_message() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    let add = "Action: QueueAdd\nQueue: q1\nInterface: SIP/7";
    env.qm
        .push_actions("P001", "1", "127.0.0.1", ami.port(), &[LOGIN, add]);
    env.qm.push_actions(
        "P001",
        "2",
        "127.0.0.1",
        ami.port(),
        &[LOGIN, add, "Action: Ping"],
    );
    let daemon = env.spawn(&fb_args(&[]));
    env.wait_fb_reports("2", Duration::from_secs(10));
    stop(daemon);
    assert_eq!(only(env.wait_fb_reports("1", Duration::ZERO)).0, "OK");
    assert_eq!(
        only(env.wait_fb_reports("2", Duration::ZERO)),
        (
            "KO".into(),
            "QueueAdd: Unable to add interface: Already there (after Login: Authentication accepted)".into()
        )
    );
    assert_eq!(ami.count("Ping"), 0, "stops at the first failure");
}

#[test]
fn a_foreign_host_or_a_refused_action_is_answered_ko_and_nothing_runs() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    env.qm.push_actions(
        "P001",
        "h",
        "192.0.2.7",
        ami.port(),
        &[LOGIN, "Action: Ping"],
    );
    env.qm.push_actions(
        "P001",
        "c",
        "127.0.0.1",
        ami.port(),
        &[
            LOGIN,
            "Action: Ping",
            "Action: Command\nCommand: core stop now",
        ],
    );
    let daemon = env.spawn(&fb_args(&[]));
    let host = only(env.wait_fb_reports("h", Duration::from_secs(10)));
    let command = only(env.wait_fb_reports("c", Duration::from_secs(10)));
    stop(daemon);
    assert_eq!(
        host,
        (
            "KO".into(),
            "refused: host 192.0.2.7 is not in AMI_HOSTS (127.0.0.1,::1,localhost): qlship only talks to the local Asterisk".into()
        )
    );
    assert_eq!(
        command,
        (
            "KO".into(),
            "refused: action Command is not in AMI_ACTIONS".into()
        )
    );
    assert_eq!(
        ami.connections(),
        0,
        "a refused container opens no connection"
    );
    let logs = env.logs();
    assert!(
        logs.contains(
            "WARN  [qlship::daemon] feedback action h refused: host 192.0.2.7 is not in AMI_HOSTS"
        ),
        "{logs}"
    );
    assert!(logs.contains("WARN  [qlship::daemon] feedback action c refused: action Command is not in AMI_ACTIONS"), "{logs}");
}

#[test]
fn local_credentials_replace_the_servers_login_and_stay_out_of_the_log() {
    let env = Env::new();
    let ami = FakeAmi::start("qlship", "local-s3cret");
    let config = env.dir.path().join("qlship.conf");
    std::fs::write(&config, "AMI_USER=qlship\nAMI_SECRET=local-s3cret\n").unwrap();
    env.qm.push_actions(
        "P001",
        "9",
        "localhost",
        ami.port(),
        &[
            "Action: Login\nUsername: admin\nSecret: wrong-remote",
            "Action: QueueAdd\nQueue: q1\nInterface: SIP/9",
        ],
    );
    let config = config.to_str().unwrap().to_string();
    let config: &'static str = Box::leak(config.into_boxed_str());
    let daemon = env.spawn(&fb_args(&["--config", config, "-v"]));
    let (status, _) = only(env.wait_fb_reports("9", Duration::from_secs(10)));
    stop(daemon);
    assert_eq!(status, "OK");
    let logins: Vec<_> = ami
        .received()
        .into_iter()
        .filter(|m| support::fake_ami::get(m, "Action") == Some("Login"))
        .collect();
    assert_eq!(logins.len(), 1);
    assert_eq!(
        support::fake_ami::get(&logins[0], "Username"),
        Some("qlship")
    );
    let logs = env.logs();
    assert!(
        logs.contains("Secret: ***"),
        "the debug log shows the login, masked: {logs}"
    );
    assert!(
        !logs.contains("local-s3cret") && !logs.contains("wrong-remote"),
        "{logs}"
    );
}

#[test]
fn a_stalled_asterisk_times_out_and_never_delays_rows() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    ami.stall_on(Some("QueueAdd"));
    let daemon = env.spawn(&fb_args(&["--ami-timeout", "3"]));
    let (text, expected) = rows(0..400);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    env.append(&lines[..200].concat());
    env.wait_for_rows(200, Duration::from_secs(10));
    env.qm.push_actions(
        "P001",
        "s",
        "127.0.0.1",
        ami.port(),
        &[LOGIN, "Action: QueueAdd\nQueue: q\nInterface: SIP/1"],
    );
    // Wait until Asterisk is stuck on it, then write rows: they must flow meanwhile.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ami.count("QueueAdd") == 0 {
        assert!(Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    let written = Instant::now();
    env.append(&lines[200..].concat());
    env.wait_for_rows(400, Duration::from_secs(10));
    assert!(
        written.elapsed() < Duration::from_millis(2500),
        "rows waited {:?} for a stuck Asterisk",
        written.elapsed()
    );
    assert!(
        wait_report_none(&env, "s"),
        "reported before the AMI timeout"
    );
    let report = only(env.wait_fb_reports("s", Duration::from_secs(10)));
    stop(daemon);
    assert_eq!(
        report,
        (
            "KO".into(),
            "QueueAdd: AMI did not answer within 3s (after Login: Authentication accepted)".into()
        )
    );
    env.assert_exact(&expected);
}

fn wait_report_none(env: &Env, id: &str) -> bool {
    env.qm.fb_results().iter().all(|r| r.id != id)
}

#[test]
fn a_kill_between_run_and_report_reports_after_restart_and_never_reruns() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    ami.delay_on("QueueAdd", Duration::from_millis(700));
    env.qm.push_actions(
        "P001",
        "k",
        "127.0.0.1",
        ami.port(),
        &[LOGIN, "Action: QueueAdd\nQueue: q\nInterface: SIP/5"],
    );
    let daemon = env.spawn(&fb_args(&[]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ami.count("QueueAdd") == 0 {
        assert!(Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Asterisk is working on it: from now on the server cannot take the result.
    env.qm
        .fail("checkFb", support::fake_qm::Fault::Http500, 10_000);
    while ami.answered("QueueAdd").is_none() {
        assert!(Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Long enough for the result to be journaled and its report to fail.
    std::thread::sleep(Duration::from_millis(800));
    kill9(daemon);
    assert!(env.qm.fb_results().is_empty());
    env.qm.clear_faults();
    // The server still offers the container (it never got a result).
    let daemon = env.spawn(&fb_args(&[]));
    let report = only(env.wait_fb_reports("k", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(800));
    stop(daemon);
    assert_eq!(report.0, "OK", "{report:?}");
    assert_eq!(ami.count("QueueAdd"), 1, "run again after the restart");
    assert_eq!(env.qm.fb_results().len(), 1);
}

#[test]
fn a_kill_during_the_run_is_reported_interrupted_and_never_reruns() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    ami.stall_on(Some("QueueAdd"));
    env.qm.push_actions(
        "P001",
        "m",
        "127.0.0.1",
        ami.port(),
        &[LOGIN, "Action: QueueAdd\nQueue: q\nInterface: SIP/6"],
    );
    let daemon = env.spawn(&fb_args(&["--ami-timeout", "30"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ami.count("QueueAdd") == 0 {
        assert!(Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(5));
    }
    kill9(daemon);
    ami.stall_on(None);
    let daemon = env.spawn(&fb_args(&[]));
    let report = only(env.wait_fb_reports("m", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(800));
    stop(daemon);
    assert_eq!(
        report,
        (
            "KO".into(),
            "interrupted: qlship stopped while running it; not run again, check the PBX".into()
        )
    );
    assert_eq!(ami.count("QueueAdd"), 1);
    assert!(
        env.logs().contains("feedback action m was running when qlship stopped: reported as interrupted, not run again"),
        "{}",
        env.logs()
    );
}

#[test]
fn a_container_the_server_resends_is_not_run_again() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    env.qm.push_actions_resent(
        "P001",
        "r",
        "127.0.0.1",
        ami.port(),
        &[LOGIN, "Action: QueueAdd\nQueue: q\nInterface: SIP/8"],
        8,
    );
    let daemon = env.spawn(&fb_args(&[]));
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.qm.fb_resends_left() > 0 {
        assert!(Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop(daemon);
    assert_eq!(ami.count("QueueAdd"), 1, "run once whatever the resends");
    assert_eq!(only(env.wait_fb_reports("r", Duration::ZERO)).0, "OK");
}
