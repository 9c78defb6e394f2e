use super::*;

use super::super::tests::defaults;

const REALISTIC: &str = r#"#!/usr/bin/perl
# wqloader_cluster.pl - one Asterisk, three customers
# (kept from the old box; qlship reads it as data)

my @RULES = (
# Client one: queues "c1-..." on their own QM
{
    ruleName       => 'client1',
    queueStarts    => 1, queueEnds => 0,
    queueToken     => 'c1-',
    agentStarts    => 1,
    agentToken     => "Agent/1",   # their agents are 1xx
    targetHost     => '10.10.0.11',
    targetPort     => 8080,
    targetCtx      => '/queuemetrics/',
    targetUser     => 'webqloader',
    targetPass     => 'it\'s # not a comment',
    targetToken    => "P01",
    timezoneOffset => -3_600,
},
{
    'ruleName'  => "client2",
    'queueEnds' => '1',
    'queueToken'=> '-c2',
    'targetHost'=> 'http://qm2.example:8081/qm',
    'targetPass'=> 'sec\ret\'s',
    'targetToken' => '',
},
{ ruleName, client1-extra, queueStarts, 1, queueToken, 'vip-',
  targetHost => '10.10.0.11', targetPort => 8080, targetCtx => 'queuemetrics',
  targetPass => 'it\'s # not a comment', targetToken => P01, timezoneOffset => -3600, },
);
1;
"#;

#[test]
fn a_realistic_wqloader_file() {
    let s = parse(REALISTIC, &defaults()).unwrap();
    assert_eq!(
        s.targets.len(),
        2,
        "client1-extra writes to client1's partition"
    );
    let c1 = &s.targets[0];
    assert_eq!(
        c1.url(),
        "http://10.10.0.11:8080/queuemetrics/jsonQLoaderApi.do"
    );
    assert_eq!(c1.password.expose(), "it's # not a comment");
    assert_eq!(c1.token, "P01");
    assert_eq!(c1.tz_offset, -3600);
    let c2 = &s.targets[1];
    assert_eq!(c2.url(), "http://qm2.example:8081/qm/jsonQLoaderApi.do");
    assert_eq!(
        c2.password.expose(),
        r"sec\ret's",
        "only \\\\ and \\' are escapes in single quotes"
    );
    assert_eq!(c2.user, "webqloader", "defaults fill the gaps");
    assert_eq!(s.rules.len(), 3);
    assert_eq!(
        s.rules[0].queue,
        Some(Matcher {
            how: How::Prefix,
            tokens: vec!["c1-".into()]
        })
    );
    assert_eq!(s.rules[0].agent.as_ref().unwrap().tokens, ["Agent/1"]);
    assert_eq!(s.rules[1].queue.as_ref().unwrap().how, How::Suffix);
    assert_eq!((s.rules[2].target, s.rules[2].line), (0, 29));
    assert_eq!(s.rules[0].line, 7);
}

#[test]
fn heads_and_brackets() {
    for text in [
        "[{ruleName=>'a', queueStarts=>1, queueToken=>'a', targetHost=>'h'}]",
        "our $rules = [ {ruleName=>'a', queueStarts=>1, queueToken=>'a', targetHost=>'h'}, ];",
        "{ruleName=>'a', queueStarts=>1, queueToken=>'a', targetHost=>'h'}",
        "@R=({ruleName=>'a',queueStarts=>1,queueToken=>'a',targetHost=>'h',targetPass=>undef});\n1;\n",
    ] {
        let s = parse(text, &defaults()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(s.rules.len(), 1, "{text}");
    }
}

#[test]
fn every_error_names_line_and_key() {
    let base = |body: &str| format!("(\n{{\n ruleName => 'r',\n{body}\n}},\n);\n");
    let cases: &[(&str, usize, Option<&str>, &str)] = &[
        (" queueStarts => 1, queueToken => 'q', targetHost => 'h', color => 'red'", 4, Some("color"), "unknown key"),
        (" queueStarts => 'maybe', queueToken => 'q', targetHost => 'h'", 4, Some("queueStarts"), "not 1 or 0"),
        (" queueToken => 'q', targetHost => 'h'", 4, Some("queueToken"), "neither"),
        (" queueStarts => 1, targetHost => 'h'", 4, Some("queueToken"), "empty"),
        (" targetHost => 'h'", 2, None, "neither a queueToken nor an agentToken"),
        (" queueStarts => 1, queueToken => 'q'", 2, Some("targetHost"), "missing"),
        (" queueStarts => 1, queueToken => 'q', targetHost => 'h', targetPort => 'http'", 4, Some("targetPort"), "not a port"),
        (" queueStarts => 1, queueToken => 'q', targetHost => 'h', timezoneOffset => 'CET'", 4, Some("timezoneOffset"), "not a number"),
        (" queueStarts => 1, queueToken => 'q', targetHost => 'h', timezoneOffset => 9223372036854775807", 4, Some("timezoneOffset"), "within ±604800"),
        (" queueStarts => 1, queueToken => \"$q\", targetHost => 'h'", 4, None, "Perl variable"),
        (" queueStarts => 1, queueToken => 'q', queueToken => 'r', targetHost => 'h'", 4, Some("queueToken"), "twice"),
        (" queueStarts => 1, queueToken => 'q', targetHost => 'ftp://h/'", 4, Some("targetHost"), "not an http"),
        (" queueStarts => 1, queueToken => 'q', targetHost => 'h', targetPass => 'x", 4, None, "never closed"),
        (" queueStarts => 1, queueToken => 'q', targetHost => 'h', targetPass => system('rm')", 4, None, "expected a key"),
    ];
    for (body, line, key, what) in cases {
        let e = parse(&base(body), &defaults()).expect_err(body);
        assert_eq!(e.line, *line, "{body}: {e}");
        assert_eq!(e.key.as_deref(), *key, "{body}: {e}");
        assert!(e.what.contains(what), "{body}: {e}");
    }
    for (text, line, what) in [
        (
            "(\n{ruleName=>'a', queueStarts=>1, queueToken=>'a', targetHost=>'h'}\n",
            2,
            "never closed",
        ),
        ("print 'hi';", 1, "rule"),
        (
            "(\n{ruleName=>'a', queueStarts=>1, queueToken=>'a', targetHost=>'h'});\nsystem('x');",
            3,
            "after the list",
        ),
        ("", 1, "no rules"),
        ("my @R = ();", 1, "no rules"),
        ("@R ({});", 1, "expected ="),
    ] {
        let e = super::super::parse(text, &defaults()).expect_err(text);
        assert_eq!(e.line, line, "{text}: {e}");
        assert!(e.what.contains(what), "{text}: {e}");
    }
}

#[test]
fn one_partition_with_two_passwords_is_refused() {
    let text = "({ruleName=>'a', queueStarts=>1, queueToken=>'a', targetHost=>'h', targetPass=>'x'},\n{ruleName=>'b', queueStarts=>1, queueToken=>'b', targetHost=>'h', targetPass=>'y'})";
    let e = parse(text, &defaults()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.what.contains("password"), "{e}");
}
