//! The AMI policy by argument, end to end against the strict AMI stand-in: containers
//! that would run something on the PBX (a shell through `Originate`→`System`, `SHELL()`
//! or `FILE()` through a variable, a foreign context) are answered `KO: refused: …` and
//! never reach Asterisk; what QueueMetrics ordinarily sends still runs, once. Also the
//! bounds on what the AMI side may send back and on a container's total time.

mod support;

use std::time::Duration;
use support::fake_ami::FakeAmi;
use support::*;

const LOGIN: &str = "Action: Login\nUsername: admin\nSecret: amp111";

fn fb_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec!["--feedback", "0.2", "--ami-timeout", "1"];
    a.extend_from_slice(extra);
    a
}

fn only(env: &Env, id: &str) -> (String, String) {
    let reports = env.wait_fb_reports(id, Duration::from_secs(10));
    assert_eq!(reports.len(), 1, "{reports:?}");
    (reports[0].status.clone(), reports[0].result.clone())
}

#[test]
fn containers_that_could_run_something_are_refused_before_asterisk() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    let cases: &[(&str, &str, &str)] = &[
        (
            "system",
            "Action: Originate\nChannel: Local/1@agents\nApplication: System\nData: touch /tmp/qlship-pwned\nAsync: true",
            "refused: Originate of application System is not allowed by AMI_APPLICATIONS",
        ),
        (
            "getvar-shell",
            "Action: Getvar\nVariable: SHELL(id)",
            "refused: Getvar Variable calls the dialplan function SHELL, not allowed by AMI_FUNCTIONS",
        ),
        (
            "getvar-spaced",
            "Action: Getvar\nVariable: shell (id)",
            "refused: Getvar Variable calls the dialplan function shell, not allowed by AMI_FUNCTIONS",
        ),
        (
            "setvar-file",
            "Action: Setvar\nVariable: FILE(/etc/asterisk/extensions.conf)\nValue: [default]",
            "refused: Setvar Variable calls the dialplan function FILE, not allowed by AMI_FUNCTIONS",
        ),
        (
            "originate-variable",
            "Action: Originate\nChannel: SIP/200\nApplication: ChanSpy\nData: SIP/101,q\nVariable: QM=1,X=${SHELL(id)}",
            "refused: Originate Variable calls the dialplan function SHELL, not allowed by AMI_FUNCTIONS",
        ),
        (
            "expansion",
            "Action: Setvar\nVariable: X\nValue: ${EXTEN}",
            "refused: Setvar Value holds a ${…} or $[…] expansion, which Asterisk may evaluate",
        ),
        (
            "redirect-context",
            "Action: Redirect\nChannel: SIP/101-00000001\nContext: from-internal\nExten: 0\nPriority: 1",
            "refused: Redirect into context from-internal (Context) is not allowed by AMI_CONTEXTS",
        ),
        (
            "atxfer-context",
            "Action: Atxfer\nChannel: SIP/101-00000001\nContext: default\nExten: 0",
            "refused: Atxfer into context default (Context) is not allowed by AMI_CONTEXTS",
        ),
        (
            "local-channel-context",
            "Action: Originate\nChannel: Local/s@from-internal\nApplication: ChanSpy\nData: SIP/101",
            "refused: Originate into context from-internal (Channel) is not allowed by AMI_CONTEXTS",
        ),
        (
            "stray-application",
            "Action: QueueAdd\nQueue: q1\nInterface: SIP/1\nApplication: System",
            "refused: QueueAdd does not take a Application header, which could run something",
        ),
    ];
    for (id, action, _) in cases {
        env.qm
            .push_actions("P001", id, "127.0.0.1", ami.port(), &[LOGIN, action]);
    }
    let daemon = env.spawn(&fb_args(&["--ami-contexts", "agents,queuemetrics"]));
    let got: Vec<(String, String)> = cases.iter().map(|(id, _, _)| only(&env, id)).collect();
    stop(daemon);
    for ((id, _, expected), got) in cases.iter().zip(&got) {
        assert_eq!(got, &("KO".to_string(), expected.to_string()), "{id}");
    }
    assert_eq!(ami.connections(), 0, "a refused container reaches no AMI");
    let logs = env.logs();
    assert!(
        logs.contains("feedback action system refused: Originate of application System"),
        "{logs}"
    );
}

#[test]
fn ordinary_actions_and_an_allowed_spy_run_exactly_once() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    env.qm.push_actions_resent(
        "P001",
        "agent",
        "127.0.0.1",
        ami.port(),
        &[
            LOGIN,
            "Action: QueueAdd\nQueue: q1\nInterface: SIP/101\nMemberName: Agent/101",
            "Action: QueuePause\nQueue: q1\nInterface: SIP/101\nPaused: true\nReason: lunch (back at 2)",
            "Action: Originate\nChannel: Local/200@agents/n\nApplication: ChanSpy\nData: SIP/101,qw\nAsync: true",
            "Action: Originate\nChannel: SIP/200\nContext: queuemetrics\nExten: 10\nPriority: 1\nVariable: AGENT=101",
            "Action: QueueRemove\nQueue: q1\nInterface: SIP/101",
        ],
        5,
    );
    let daemon = env.spawn(&fb_args(&["--ami-contexts", "agents,queuemetrics"]));
    let (status, text) = only(&env, "agent");
    while env.qm.fb_resends_left() > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop(daemon);
    assert_eq!(status, "OK", "{text}");
    for action in ["QueueAdd", "QueuePause", "QueueRemove", "Logoff"] {
        assert_eq!(ami.count(action), 1, "{action}");
    }
    assert_eq!(ami.count("Originate"), 2);
    assert_eq!(ami.connections(), 1);
    assert_eq!(ami.violations(), Vec::<String>::new());
    assert_eq!(
        env.qm
            .fb_results()
            .iter()
            .filter(|r| r.id == "agent")
            .count(),
        1
    );
}

#[test]
fn an_endless_line_from_the_ami_side_is_cut_at_its_bound() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    ami.flood_on("QueueAdd");
    env.qm.push_actions(
        "P001",
        "flood",
        "127.0.0.1",
        ami.port(),
        &[LOGIN, "Action: QueueAdd\nQueue: q\nInterface: SIP/1"],
    );
    let daemon = env.spawn(&fb_args(&["--ami-timeout", "5"]));
    let report = only(&env, "flood");
    stop(daemon);
    assert_eq!(
        report,
        (
            "KO".into(),
            "QueueAdd: AMI sent a line over 8192 bytes (after Login: Authentication accepted)"
                .into()
        )
    );
}

#[test]
fn a_container_is_bounded_in_total_time_however_prompt_each_answer() {
    let env = Env::new();
    let ami = FakeAmi::start("admin", "amp111");
    // Each answer comes within the 1 s deadline; six of them do not fit in 3 s.
    ami.delay_on("QueueAdd", Duration::from_millis(700));
    let adds: Vec<String> = (1..=6)
        .map(|n| format!("Action: QueueAdd\nQueue: q\nInterface: SIP/{n}"))
        .collect();
    let mut actions = vec![LOGIN];
    actions.extend(adds.iter().map(String::as_str));
    env.qm
        .push_actions("P001", "slow", "127.0.0.1", ami.port(), &actions);
    let daemon = env.spawn(&fb_args(&[]));
    let (status, text) = only(&env, "slow");
    stop(daemon);
    assert_eq!(status, "KO");
    assert!(
        text.starts_with("QueueAdd: the container took longer than 3s in all (after Login: Authentication accepted; QueueAdd: Added interface to queue"),
        "{text}"
    );
    let added = text.matches("Added interface to queue").count();
    assert!(
        (3..6).contains(&added),
        "{added} answers waited for: {text}"
    );
}

#[test]
fn feedback_over_plain_http_is_warned_about_at_start_and_in_check() {
    let env = Env::new();
    let warning = "--feedback over plain HTTP (http://127.0.0.1:";
    let daemon = env.spawn(&fb_args(&[]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !env.logs().contains(warning) {
        assert!(std::time::Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(daemon);
    assert!(env
        .logs()
        .contains(&format!("WARN  [qlship::app] {warning}")));
    env.append(""); // `check` also wants QUEUE_LOG to exist
    let mut args = vec!["check".to_string()];
    args.extend(env.args(&["--feedback", "5"]));
    let (code, text) = run_qlship(&args);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("\nqlship: warning: {warning}")),
        "{text}"
    );
    assert!(text.contains("anyone on the network path can pose as QueueMetrics and hand this PBX actions to run (within the AMI policy); use --https"), "{text}");
}
