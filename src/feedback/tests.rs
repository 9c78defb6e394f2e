use super::*;
use miniserde::json;

fn policy() -> Policy {
    Policy::default()
}

fn c(host: &str, actions: &[&str]) -> ActionContainer {
    ActionContainer {
        id: "77".into(),
        host: host.into(),
        port: 5038,
        actions: actions.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn check_fb_encodes_results_in_the_documented_shape() {
    let p = Partition {
        token: "P1".into(),
        tz_offset: 0,
    };
    assert_eq!(
        check_fb(&p, &[]),
        r#"{"commandId":"checkFb","version":"1.0","token":"P1","results":[]}"#
    );
    let r = [
        FbResult {
            id: "5".into(),
            ok: true,
            text: "QueueAdd: Added".into(),
        },
        FbResult {
            id: "6".into(),
            ok: false,
            text: "KO: \"x\"".into(),
        },
    ];
    assert_eq!(
        check_fb(&p, &r),
        r#"{"commandId":"checkFb","version":"1.0","token":"P1","results":[{"commandId":"checkFbResCon","version":"1.0","token":"P1","id":"5","resultStatus":"OK","result":"QueueAdd: Added"},{"commandId":"checkFbResCon","version":"1.0","token":"P1","id":"6","resultStatus":"KO","result":"KO: \"x\""}]}"#
    );
}

#[test]
fn containers_are_read_with_numbers_or_strings_and_bad_ones_keep_their_id() {
    let v: Value = json::from_str(
        r#"[{"id":12,"host":"127.0.0.1","port":"5038","actions":["Action: Ping"]},
            {"id":"13","host":"localhost","actions":["Action: Ping"]},
            {"id":"14","host":"localhost","port":99999,"actions":[]},
            {"host":"localhost","actions":[]},
            {"id":"15","host":"localhost","actions":[7]}]"#,
    )
    .unwrap();
    let got = containers(Some(&v));
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].as_ref().unwrap().id, "12");
    assert_eq!(got[0].as_ref().unwrap().port, 5038);
    assert_eq!(got[1].as_ref().unwrap().port, 5038);
    assert_eq!(
        got[2],
        Err(("14".into(), "the port is not a TCP port".into()))
    );
    assert_eq!(
        got[3],
        Err(("".into(), "an action container has no id".into()))
    );
    assert_eq!(got[4], Err(("15".into(), "an action is not text".into())));
    assert!(containers(None).is_empty());
}

#[test]
fn containers_are_bounded_in_count_actions_and_size() {
    let one = |id: usize, actions: &str| {
        format!(r#"{{"id":"{id}","host":"localhost","actions":[{actions}]}}"#)
    };
    let ping = "\"Action: Ping\"";
    let many: Vec<String> = (0..MAX_CONTAINERS + 5).map(|i| one(i, ping)).collect();
    let v: Value = json::from_str(&format!("[{}]", many.join(","))).unwrap();
    assert_eq!(containers(Some(&v)).len(), MAX_CONTAINERS);

    let pings = vec![ping; MAX_ACTIONS_PER_CONTAINER];
    let at = |n: usize| -> Value {
        json::from_str(&format!("[{}]", one(1, &pings[..n].join(",")))).unwrap()
    };
    assert!(containers(Some(&at(MAX_ACTIONS_PER_CONTAINER)))[0].is_ok());
    let over: Value = json::from_str(&format!(
        "[{}]",
        one(1, &format!("{},{ping}", pings.join(",")))
    ))
    .unwrap();
    assert_eq!(
        containers(Some(&over))[0],
        Err((
            "1".into(),
            "33 actions, more than 32 in one container".into()
        ))
    );

    let long = format!("\"Action: Ping\\nX: {}\"", "a".repeat(MAX_ACTION_BYTES));
    let v: Value = json::from_str(&format!("[{}]", one(2, &long))).unwrap();
    assert_eq!(
        containers(Some(&v))[0],
        Err(("2".into(), "an action of over 8192 bytes".into()))
    );
    let big = format!(
        "\"Action: Ping\\nX: {}\"",
        "a".repeat(MAX_ACTION_BYTES - 20)
    );
    let v: Value = json::from_str(&format!("[{}]", one(3, &vec![big; 9].join(",")))).unwrap();
    assert_eq!(
        containers(Some(&v))[0],
        Err(("3".into(), "actions of over 65536 bytes in all".into()))
    );
    let v: Value = json::from_str(&format!(
        r#"[{{"id":"{}","host":"localhost","actions":[]}}]"#,
        "9".repeat(MAX_ID_BYTES + 1)
    ))
    .unwrap();
    assert_eq!(
        containers(Some(&v))[0],
        Err(("".into(), "an id of over 256 bytes".into()))
    );
}

#[test]
fn control_characters_in_a_value_are_refused() {
    assert_eq!(
        parse_transaction("Action: QueueAdd\nQueue: q\rApplication: System"),
        Err("Queue: a control character in the value".into())
    );
    assert!(parse_transaction("Action: QueueAdd\nQueue: q\tx").is_ok());
}

#[test]
fn a_foreign_host_is_refused_with_the_reason() {
    let e = vet(&c("10.0.0.9", &["Action: Ping"]), &policy()).unwrap_err();
    assert_eq!(
        e,
        "host 10.0.0.9 is not in AMI_HOSTS (127.0.0.1,::1,localhost): qlship only talks to the local Asterisk"
    );
}

#[test]
fn a_container_with_one_refused_action_is_refused_whole() {
    let e = vet(
        &c(
            "127.0.0.1",
            &[
                "Action: QueueAdd\nQueue: q1\nInterface: SIP/1",
                "Action: Command\nCommand: core stop now",
            ],
        ),
        &policy(),
    )
    .unwrap_err();
    assert_eq!(e, "action Command is not in AMI_ACTIONS");
    let e = vet(&c("127.0.0.1", &["Queue: q1"]), &policy()).unwrap_err();
    assert_eq!(e, "action 1 has no Action: line");
    let e = vet(&c("127.0.0.1", &["Action QueueAdd"]), &policy()).unwrap_err();
    assert_eq!(
        e,
        "action 1: \"Action QueueAdd\" is not a 'Key: Value' line"
    );
}

#[test]
fn action_ids_are_added_and_local_login_replaces_the_servers() {
    let v = vet(
        &c(
            "LOCALHOST",
            &[
                "Action: Login\r\nUsername: qm\r\nSecret: remote\r\n",
                "action: queueadd\nQueue: q1\nInterface: SIP/1",
                "Action: QueuePause\nActionID: mine\nInterface: SIP/1\nPaused: true",
            ],
        ),
        &Policy {
            login: Some(("local".into(), "s3cret".into())),
            ..policy()
        },
    )
    .unwrap();
    let wire: Vec<String> = v.transactions.iter().map(Transaction::encode).collect();
    assert_eq!(
        wire,
        [
            "Action: Login\r\nUsername: local\r\nSecret: s3cret\r\nActionID: qlship-77-1\r\n\r\n",
            "action: queueadd\r\nQueue: q1\r\nInterface: SIP/1\r\nActionID: qlship-77-2\r\n\r\n",
            "Action: QueuePause\r\nActionID: mine\r\nInterface: SIP/1\r\nPaused: true\r\n\r\n",
        ]
    );
    assert_eq!(
        v.transactions[0].redacted(),
        "Action: Login, Username: local, Secret: ***, ActionID: qlship-77-1"
    );
    // Without local credentials the server's Login goes through as it is.
    let v = vet(
        &c("::1", &["Action: Login\nUsername: qm\nSecret: remote"]),
        &policy(),
    )
    .unwrap();
    assert_eq!(v.transactions[0].get("Secret"), Some("remote"));
}

#[test]
fn responses_are_judged_by_their_status_and_carry_asterisks_message() {
    let t = parse_transaction("Action: QueueAdd").unwrap();
    let m = |s: &str, msg: &str| Message {
        fields: vec![
            ("Response".into(), s.into()),
            ("Message".into(), msg.into()),
        ],
    };
    assert_eq!(
        judge(&t, &m("Success", "Added interface to queue")),
        Ok("QueueAdd: Added interface to queue".into())
    );
    assert_eq!(
        judge(&t, &m("Error", "Unable to add interface: Already there")),
        Err("QueueAdd: Unable to add interface: Already there".into())
    );
    assert_eq!(judge(&t, &m("Success", "")), Ok("QueueAdd: Success".into()));
}
