use super::*;
use crate::feedback::parse_transaction;

fn judge(text: &str, policy: &Policy) -> Result<(), String> {
    check(&parse_transaction(text).unwrap(), policy).map_err(|r| r.to_string())
}

fn default_judge(text: &str) -> Result<(), String> {
    judge(text, &Policy::default())
}

#[test]
fn what_queuemetrics_sends_passes() {
    for ok in [
        "Action: QueueAdd\nQueue: q1\nInterface: SIP/101\nMemberName: Agent/101\nPenalty: 1",
        "Action: QueuePause\nInterface: SIP/101\nPaused: true\nReason: lunch (back at 2)",
        "Action: QueueRemove\nQueue: q1\nInterface: SIP/101",
        "Action: Originate\nChannel: SIP/200\nApplication: ChanSpy\nData: SIP/101,qw\nAsync: true",
        "Action: Originate\nChannel: SIP/200\nApplication: chanspy\nData: SIP/101,qBe(123)",
        "Action: Originate\nChannel: Local/200@from-internal\nContext: agents\nExten: 101\nPriority: 1\nVariable: AGENT=101,__QM_USER=robert",
        "Action: Redirect\nChannel: SIP/101-0001\nContext: from-internal\nExten: 300\nPriority: 1",
        "Action: Setvar\nVariable: QM_PAUSE\nValue: lunch",
        "Action: Getvar\nChannel: SIP/101-0001\nVariable: CALLERID_NUM",
    ] {
        assert_eq!(default_judge(ok), Ok(()), "{ok}");
    }
}

#[test]
fn originate_of_an_application_not_listed_is_refused() {
    assert_eq!(
        default_judge(
            "Action: Originate\nChannel: Local/1@x\nApplication: System\nData: touch /tmp/pwned"
        ),
        Err("Originate of application System is not allowed by AMI_APPLICATIONS".into())
    );
    // Every Application header counts: Asterisk might read either.
    assert!(default_judge(
        "Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\napplication: System"
    )
    .is_err());
    let with_system = Policy {
        applications: vec!["System".into()],
        ..Policy::default()
    };
    assert_eq!(
        judge(
            "Action: Originate\nChannel: SIP/1\nApplication: system\nData: true",
            &with_system
        ),
        Ok(())
    );
}

#[test]
fn dialplan_functions_are_refused_in_any_case_and_spacing() {
    for (text, function) in [
        ("Action: Getvar\nVariable: SHELL(id)", "SHELL"),
        ("Action: Getvar\nVariable: shell (id)", "shell"),
        ("Action: Getvar\nVariable: ${SHELL(id)}", "SHELL"),
        ("Action: Setvar\nVariable: FILE(/etc/asterisk/extensions.conf)\nValue: x", "FILE"),
        ("Action: Setvar\nVariable: X\nValue: ${ Shell ( id ) }", "Shell"),
        ("Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\nVariable: A=1,B=${SHELL(id)}", "SHELL"),
        ("Action: Originate\nChannel: Local/1@agents\nExten: 1\nContext: agents\nVariable: FILE(/tmp/x)=y", "FILE"),
        // An allowed function does not hide a refused one inside it.
        ("Action: Getvar\nVariable: ${CALLERID(${SHELL(id)})}", "SHELL"),
    ] {
        let callerid = Policy {
            functions: vec!["CALLERID".into()],
            ..Policy::default()
        };
        let err = judge(text, &callerid).unwrap_err();
        assert!(
            err.contains(&format!("calls the dialplan function {function},")),
            "{text}: {err}"
        );
    }
}

#[test]
fn expansions_are_refused_unless_of_an_allowed_function() {
    for text in [
        "Action: Setvar\nVariable: X\nValue: ${OTHER}",
        "Action: Setvar\nVariable: X\nValue: $ {OTHER}",
        "Action: Setvar\nVariable: X\nValue: $[1+1]",
        "Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\nData: ${SHELL(id)}",
        "Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\nData: $[1]",
    ] {
        let err = default_judge(text).unwrap_err();
        assert!(err.contains("expansion"), "{text}: {err}");
    }
    let callerid = Policy {
        functions: vec!["CALLERID".into()],
        ..Policy::default()
    };
    assert_eq!(
        judge(
            "Action: Getvar\nChannel: SIP/1-1\nVariable: CALLERID(num)",
            &callerid
        ),
        Ok(())
    );
    assert_eq!(
        judge(
            "Action: Setvar\nVariable: X\nValue: ${callerid(num)}",
            &callerid
        ),
        Ok(())
    );
    assert!(judge("Action: Getvar\nVariable: SHELL(id)", &callerid).is_err());
}

#[test]
fn executing_headers_on_actions_that_do_not_take_them_are_refused() {
    assert_eq!(
        default_judge("Action: QueueAdd\nQueue: q\nInterface: SIP/1\nApplication: System"),
        Err("QueueAdd does not take a Application header, which could run something".into())
    );
    assert!(default_judge(
        "Action: Redirect\nChannel: SIP/1-1\nContext: a\nExten: 1\nPriority: 1\nVariable: X=1"
    )
    .is_err());
    assert!(default_judge("Action: Hangup\nChannel: SIP/1-1\ndata: x").is_err());
    assert!(default_judge("Action: QueuePause\nInterface: SIP/1\nCommand: rm -rf /").is_err());
    // Unknown headers that execute nothing pass: Asterisk ignores them.
    assert_eq!(
        default_judge(
            "Action: QueueAdd\nQueue: q\nInterface: SIP/1\nStateInterface: SIP/1\nX-Note: hi"
        ),
        Ok(())
    );
}

#[test]
fn contexts_are_restricted_only_when_listed() {
    let agents = Policy {
        contexts: Some(vec!["agents".into(), "queuemetrics".into()]),
        ..Policy::default()
    };
    let redirect =
        "Action: Redirect\nChannel: SIP/1-1\nContext: from-internal\nExten: 1\nPriority: 1";
    assert_eq!(default_judge(redirect), Ok(()));
    assert_eq!(
        judge(redirect, &agents),
        Err("Redirect into context from-internal (Context) is not allowed by AMI_CONTEXTS".into())
    );
    assert_eq!(
        judge("Action: Redirect\nChannel: SIP/1-1\nContext: Agents\nExten: 1\nPriority: 1\nExtraChannel: SIP/2-1\nExtraContext: queuemetrics", &agents),
        Ok(())
    );
    assert!(judge(
        "Action: Redirect\nChannel: SIP/1-1\nContext: agents\nExtraContext: from-internal",
        &agents
    )
    .is_err());
    assert!(judge(
        "Action: Atxfer\nChannel: SIP/1-1\nExten: 9\nContext: default",
        &agents
    )
    .is_err());
    assert!(judge(
        "Action: Originate\nChannel: SIP/1\nContext: default\nExten: 1\nPriority: 1",
        &agents
    )
    .is_err());
    assert_eq!(
        judge("Action: Originate\nChannel: Local/200@from-internal/n\nApplication: ChanSpy\nData: SIP/1", &agents),
        Err("Originate into context from-internal (Channel) is not allowed by AMI_CONTEXTS".into())
    );
    assert_eq!(
        judge(
            "Action: Originate\nChannel: Local/200@agents/n\nApplication: ChanSpy\nData: SIP/1",
            &agents
        ),
        Ok(())
    );
    // QueueAdd's Local interface is a member, not a destination it dials now.
    assert_eq!(
        judge(
            "Action: QueueAdd\nQueue: q\nInterface: Local/1@elsewhere",
            &agents
        ),
        Ok(())
    );
}

#[test]
fn config_keys_build_the_policy() {
    let keys = [
        ("AMI_APPLICATIONS", "ChanSpy, ExtenSpy,Dial"),
        ("AMI_CONTEXTS", "agents"),
        ("AMI_FUNCTIONS", "CALLERID"),
        ("AMI_USER", "qlship"),
        ("AMI_SECRET", "s3cret"),
    ];
    let p = Policy::from_keys(|k| {
        keys.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| (*v, "test"))
    })
    .unwrap();
    assert_eq!(p.applications, ["ChanSpy", "ExtenSpy", "Dial"]);
    assert_eq!(p.contexts, Some(vec!["agents".to_string()]));
    assert_eq!(p.functions, ["CALLERID"]);
    assert_eq!(p.hosts, DEFAULT_HOSTS);
    assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
    let empty = Policy::from_keys(|k| match k {
        "AMI_APPLICATIONS" | "AMI_CONTEXTS" => Some(("", "f:1")),
        _ => None,
    })
    .unwrap();
    assert!(empty.applications.is_empty());
    assert_eq!(empty.contexts, None);
    assert_eq!(
        Policy::from_keys(|k| (k == "AMI_USER").then_some(("u", "f:3 AMI_USER")))
            .unwrap_err()
            .to_string(),
        "f:3 AMI_USER: AMI_USER needs AMI_SECRET in the --config file (never on the command line)"
    );
}
