use super::*;

use super::super::tests::defaults;

const REALISTIC: &str = r#"[
  {
"clientname": "client1",
"uri": "http://10.10.0.11:8080/queuemetrics",
"login": "webqloader",
"pass": "p\"w\u00e9\\d",
"token": "P01",
"matcher": ["1234-", "5678-"],
"match": "prefix",
"removematch": true,
"disabled": false,
"noactions": true
  },
  {
"clientname": "client2",
"uri": "https://qm2.example/qm/",
"login": "robot",
"pass": "x",
"matcher": ["-c2"],
"match": "suffix",
"timezoneOffset": 7200
  },
  {"clientname": "old", "uri": "http://10.0.0.9:8080/queuemetrics", "matcher": "old", "match": "any", "disabled": true}
]
"#;

#[test]
fn a_realistic_uniloader_file() {
    assert!(looks_like_json(REALISTIC));
    let s = super::super::parse(REALISTIC, &defaults()).unwrap();
    assert_eq!(s.targets.len(), 3);
    let c1 = &s.targets[0];
    assert_eq!(c1.password.expose(), "p\"w\u{e9}\\d");
    assert!(c1.noactions && !c1.disabled);
    assert_eq!(c1.token, "P01");
    let c2 = &s.targets[1];
    assert_eq!(c2.url(), "https://qm2.example:443/qm/jsonQLoaderApi.do");
    assert_eq!(c2.tz_offset, 7200);
    assert_eq!(c2.token, "");
    assert!(s.targets[2].disabled);
    assert_eq!(
        s.rules[0].queue.as_ref().unwrap().tokens,
        ["1234-", "5678-"]
    );
    assert!(s.rules[0].strip && !s.rules[1].strip);
    assert_eq!(s.rules[2].queue.as_ref().unwrap().how, How::Anywhere);
    assert_eq!(
        (s.rules[0].line, s.rules[1].line, s.rules[2].line),
        (2, 14, 23)
    );
}

/// A splitter file shaped exactly as Loway's published Ansible template renders
/// (Loway/OpenQueueMetricsAddOns, `ansible-uniloader-splitter/ansible/files/
/// splitter.json.j2`, with Ansible's trim_blocks): tab-indented clients, each
/// followed by `},` and a blank line, one more blank line, then the disabled "DUMMY
/// CLOSING ENTRY" that exists only so that the last client's comma is legal: a
/// `file:` address, empty login and pass, matcher `[""]`. The client values are ours.
const LOWAY_TEMPLATE: &str = include_str!("../../../tests/support/loway_splitter.json");

#[test]
fn loway_template_with_its_disabled_file_closing_entry_is_read_field_by_field() {
    assert!(looks_like_json(LOWAY_TEMPLATE));
    let s = super::super::parse(LOWAY_TEMPLATE, &defaults()).unwrap();
    let [acme, beta, dummy] = &s.targets[..] else {
        panic!("{:?}", s.targets)
    };
    // Every field of each client lands where it belongs.
    assert_eq!(
        (acme.name.as_str(), acme.url().as_str(), acme.user.as_str()),
        (
            "acme",
            "https://acme.queuemetrics-live.com:443/acme/jsonQLoaderApi.do",
            "webqloader"
        )
    );
    assert_eq!(
        (acme.password.expose(), acme.token.as_str()),
        ("s3cret", "pbx7")
    );
    assert!(acme.noactions && !acme.disabled && !beta.noactions && !beta.disabled);
    assert_eq!(
        (
            beta.url().as_str(),
            beta.user.as_str(),
            beta.password.expose()
        ),
        (
            "http://10.1.2.3:8080/queuemetrics/jsonQLoaderApi.do",
            "robot",
            "other"
        )
    );
    // The closing entry: listed, disabled, its file: address shown as written, and
    // its empty login and pass taken as given (not the defaults).
    assert!(dummy.disabled && dummy.noactions, "{dummy:?}");
    assert_eq!(dummy.url(), "file:q-client00.txt");
    assert_eq!((dummy.user.as_str(), dummy.password.expose()), ("", ""));
    // Two rules (the empty matcher takes nothing), suffixes removed before upload.
    assert_eq!(s.rules.len(), 2, "{:?}", s.rules);
    for (rule, token) in s.rules.iter().zip(["-acme", "-beta"]) {
        let m = rule.queue.as_ref().unwrap();
        assert_eq!(
            (m.how, m.tokens.as_slice()),
            (How::Suffix, [token.to_owned()].as_slice())
        );
        assert_eq!(rule.agent.as_ref(), Some(m));
        assert!(rule.strip);
    }
    assert_eq!((s.rules[0].line, s.rules[1].line), (4, 17));
    let row = |q: &str| super::super::tests::row(q, "NONE");
    match s.route(&row("sales-beta")) {
        super::super::Route::To(1, Some(r)) => assert_eq!(r.queue(), "sales"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.route(&row("sales-gamma")), super::super::Route::Nowhere);
}

#[test]
fn enabled_file_and_mysql_entries_say_what_to_do_instead() {
    let entry = |uri: &str, disabled: bool| {
        format!("[{{\"clientname\": \"c\", \"uri\": \"{uri}\", \"matcher\": [\"a\"], \"disabled\": {disabled}}}]")
    };
    let e = super::super::parse(&entry("file:q.txt", false), &defaults()).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("uri"));
    assert!(
        e.what
            .contains("\"file:q.txt\" is Uniloader's file back-end"),
        "{e}"
    );
    assert!(e.what.contains("check-rules"), "{e}");
    let mysql = "mysql:qm:Pa55@tcp(10.0.0.5:3306)/queuemetrics";
    let e = super::super::parse(&entry(mysql, false), &defaults()).unwrap_err();
    assert!(e.what.contains("Uniloader's MySQL back-end"), "{e}");
    assert!(e.what.contains("http://"), "{e}");
    assert!(
        !e.what.contains("Pa55"),
        "the address may hold a password: {e}"
    );
    let e = super::super::parse(&entry("ftp://h/x", false), &defaults()).unwrap_err();
    assert!(e.what.contains("not an http:// or https:// address"), "{e}");
    // Disabled, any of them is accepted and shown without credentials.
    for (uri, shown) in [
        ("file:q.txt", "file:q.txt"),
        (mysql, "mysql:…@tcp(10.0.0.5:3306)/queuemetrics"),
        ("ftp://h/x", "ftp://h/x"),
    ] {
        let s = super::super::parse(&entry(uri, true), &defaults()).unwrap();
        assert!(s.targets[0].disabled);
        assert_eq!(s.targets[0].url(), shown);
    }
}

#[test]
fn a_disabled_entry_never_stops_qlship() {
    // Beside an enabled entry for the same partition (other password, no matcher,
    // no uri at all in the third): each is accepted and only drops its own rows.
    let text = r#"[
 {"clientname": "off", "uri": "http://qm:8080/queuemetrics", "token": "P1", "pass": "old",
  "matcher": ["old-"], "disabled": true},
 {"clientname": "on", "uri": "http://qm:8080/queuemetrics", "token": "P1", "pass": "new",
  "matcher": ["new-"]},
 {"clientname": "bare", "disabled": true}
]"#;
    let s = super::super::parse(text, &defaults()).unwrap();
    assert_eq!(s.targets.len(), 3, "{:?}", s.targets);
    assert!(s.targets[0].disabled && !s.targets[1].disabled && s.targets[2].disabled);
    assert_eq!(s.targets[1].password.expose(), "new");
    assert_eq!(s.targets[2].url(), "(no uri)");
    assert_eq!(s.rules.len(), 2);
    let row = |q: &str| super::super::tests::row(q, "NONE");
    assert_eq!(s.route(&row("old-x")), super::super::Route::Disabled(0));
    assert!(matches!(
        s.route(&row("new-x")),
        super::super::Route::To(1, None)
    ));
    // Malformed is still malformed, disabled or not.
    let e = super::super::parse(
        r#"[{"clientname": "c", "disabled": true, "pass": 1}]"#,
        &defaults(),
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("pass"), "{e}");
}

#[test]
fn perl_is_not_mistaken_for_json() {
    assert!(!looks_like_json("[ { ruleName => 'a' } ]"));
    assert!(!looks_like_json("[ { \"ruleName\" => 'a' } ]"));
    assert!(!looks_like_json("my @R = ({});"));
    assert!(looks_like_json("\n  {\"clientname\": 1}"));
}

#[test]
fn every_error_names_line_and_key() {
    let client = |extra: &str| {
        format!("[\n {{\n  \"clientname\": \"c\",\n  \"uri\": \"http://h:8080/qm\",\n  \"matcher\": [\"a\"]{extra}\n }}\n]")
    };
    let cases: &[(&str, usize, Option<&str>, &str)] = &[
        (",\n  \"colour\": \"red\"", 6, Some("colour"), "unknown key"),
        (
            ",\n  \"match\": \"regex\"",
            6,
            Some("match"),
            "not prefix, suffix or any",
        ),
        (
            ",\n  \"disabled\": \"yes\"",
            6,
            Some("disabled"),
            "true or false",
        ),
        (",\n  \"pass\": 1234", 6, Some("pass"), "expected a string"),
        (
            ",\n  \"timezoneOffset\": \"+1\"",
            6,
            Some("timezoneOffset"),
            "whole seconds",
        ),
        (",\n  \"matcher\": []", 6, Some("matcher"), "twice"),
        (",\n  \"pass\": \"unterminated", 6, None, "never closed"),
        (",\n  \"pass\": 'x'", 6, None, "not JSON"),
        (",\n  \"pass\": \"x\",\n}", 7, None, "quoted key"),
    ];
    for (extra, line, key, what) in cases {
        let text = client(extra);
        let e = super::super::parse(&text, &defaults()).expect_err(&text);
        assert_eq!(e.line, *line, "{text}: {e}");
        assert_eq!(e.key.as_deref(), *key, "{text}: {e}");
        assert!(e.what.contains(what), "{text}: {e}");
    }
    for (text, line, key, what) in [
        (
            "[\n{\"clientname\": \"c\", \"matcher\": [\"a\"]}]",
            2,
            Some("uri"),
            "missing",
        ),
        (
            "[\n{\"clientname\": \"c\",\n \"uri\": \"qm:8080\", \"matcher\": [\"a\"]}]",
            3,
            Some("uri"),
            "http",
        ),
        (
            "[\n{\"uri\": \"http://h/q\", \"matcher\": [\"a\"]}]",
            2,
            Some("clientname"),
            "missing",
        ),
        (
            "[\n{\"clientname\": \"c\", \"uri\": \"http://h/q\"}]",
            2,
            Some("matcher"),
            "missing",
        ),
        (
            "[\n{\"clientname\": \"c\", \"uri\": \"http://h/q\", \"matcher\": [\"\"]}]",
            2,
            Some("matcher"),
            "nothing",
        ),
        (
            "[\n{\"clientname\": \"c\", \"uri\": \"http://h/q\", \"matcher\": [1]}]",
            2,
            Some("matcher"),
            "strings",
        ),
        (
            "[{\"clientname\": \"c\", \"uri\": \"http://h/q\", \"matcher\": [\"a\"]},\n 3\n]",
            2,
            None,
            "client object",
        ),
        ("[]", 1, None, "no rules"),
        ("{\"a\": 1} x", 1, None, "after the JSON"),
    ] {
        let e = super::super::parse(text, &defaults()).expect_err(text);
        assert_eq!(e.line, line, "{text}: {e}");
        assert_eq!(e.key.as_deref(), key, "{text}: {e}");
        assert!(e.what.contains(what), "{text}: {e}");
    }
}
