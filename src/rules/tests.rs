use super::*;

/// What the single-target flags default to: what a Perl rule leaves out.
pub(super) fn defaults() -> Target {
    Target {
        port: 8080,
        context: "queuemetrics".into(),
        user: "webqloader".into(),
        password: "qloader".into(),
        ..Target::default()
    }
}

pub(super) fn row(queue: &str, agent: &str) -> Row {
    Row::new(1, "c", queue, agent, "V", [""; 5])
}

#[test]
fn time_zone_offsets_beyond_a_week_are_refused_in_both_formats() {
    let json = |tz: &str| {
        format!(
            r#"[{{"clientname":"c","uri":"http://h/qm","token":"P","matcher":["q"],"timezoneOffset":{tz}}}]"#
        )
    };
    assert_eq!(
        parse(&json("604800"), &defaults()).unwrap().targets[0].tz_offset,
        604_800
    );
    assert_eq!(
        parse(&json("-604801"), &defaults())
            .unwrap_err()
            .to_string(),
        "line 1: timezoneOffset: not whole seconds within ±604800"
    );
    assert!(parse(&json("9.3e18"), &defaults()).is_err());
    let perl = |tz: &str| {
        format!("({{ruleName=>'r', queueStarts=>1, queueToken=>'q', targetHost=>'h', timezoneOffset=>{tz}}});")
    };
    assert_eq!(
        parse(&perl("-604_800"), &defaults()).unwrap().targets[0].tz_offset,
        -604_800
    );
    assert!(parse(&perl("-9223372036854775808"), &defaults()).is_err());
}

#[test]
fn rules_files_are_bounded_in_size_and_count() {
    let rule = |i: usize| {
        format!("{{ruleName=>'r{i}', queueStarts=>1, queueToken=>'q{i}', targetHost=>'h', targetToken=>'P'}},\n")
    };
    let file = |n: usize| format!("my @r = (\n{});\n", (0..n).map(rule).collect::<String>());
    assert_eq!(
        parse(&file(MAX_RULES), &defaults()).unwrap().rules.len(),
        MAX_RULES
    );
    assert_eq!(
        parse(&file(MAX_RULES + 1), &defaults())
            .unwrap_err()
            .to_string(),
        format!("line {}: more than {MAX_RULES} rules", MAX_RULES + 2)
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("rules.pl");
    let mut text = file(1);
    text.push_str(&"#".repeat(MAX_RULES_FILE_BYTES as usize));
    std::fs::write(&big, text).unwrap();
    assert_eq!(
        load(&big, &defaults()).unwrap_err().to_string(),
        format!(
            "{}:0: larger than 1024 KiB: not a rules file",
            big.display()
        )
    );
}

fn target(name: &str, disabled: bool) -> Target {
    Target {
        name: name.into(),
        host: format!("{name}.example"),
        port: 8080,
        disabled,
        ..Target::default()
    }
}

fn rule(target: usize, q: Option<(How, &str)>, a: Option<(How, &str)>, strip: bool) -> Rule {
    let m = |x: Option<(How, &str)>| {
        x.map(|(how, t)| Matcher {
            how,
            tokens: vec![t.to_owned()],
        })
    };
    Rule {
        name: format!("r{target}"),
        target,
        queue: m(q),
        agent: m(a),
        strip,
        line: 1,
    }
}

#[test]
fn first_match_wins_and_queue_is_tested_before_agent() {
    let split = Split {
        targets: vec![target("a", false), target("b", false)],
        rules: vec![
            rule(0, Some((How::Prefix, "a-")), None, false),
            rule(
                1,
                Some((How::Suffix, "-b")),
                Some((How::Prefix, "Agent/b")),
                true,
            ),
        ],
    };
    assert_eq!(split.route(&row("a-x-b", "Agent/b1")), Route::To(0, None));
    let mut stripped = row("q-b", "Agent/a1");
    stripped.set_queue("q");
    assert_eq!(
        split.route(&row("q-b", "Agent/a1")),
        Route::To(1, Some(Box::new(stripped))),
        "the queue matched, so the queue is what is stripped"
    );
    let mut by_agent = row("NONE", "Agent/b7");
    by_agent.set_agent("7");
    assert_eq!(
        split.route(&row("NONE", "Agent/b7")),
        Route::To(1, Some(Box::new(by_agent)))
    );
    assert_eq!(split.route(&row("NONE", "NONE")), Route::Everyone);
    assert_eq!(split.route(&row("zzz", "Agent/z")), Route::Nowhere);
}

#[test]
fn a_disabled_target_consumes_its_rows() {
    let split = Split {
        targets: vec![target("a", true), target("b", false)],
        rules: vec![
            rule(0, Some((How::Prefix, "a-")), None, false),
            rule(1, Some((How::Anywhere, "-")), None, false),
        ],
    };
    assert_eq!(split.route(&row("a-1", "x")), Route::Disabled(0));
    assert_eq!(split.route(&row("b-1", "x")), Route::To(1, None));
    assert_eq!(split.enabled().map(|(i, _)| i).collect::<Vec<_>>(), [1]);
}

#[test]
fn matchers_strip_what_they_matched() {
    let m = |how, t: &str| Matcher {
        how,
        tokens: vec!["zz".into(), t.into()],
    };
    assert_eq!(
        m(How::Prefix, "1234-").apply("1234-client1").as_deref(),
        Some("client1")
    );
    assert_eq!(
        m(How::Suffix, "-client1").apply("1234-client1").as_deref(),
        Some("1234")
    );
    assert_eq!(m(How::PrefixOrSuffix, "x").apply("axa").as_deref(), None);
    assert_eq!(
        m(How::PrefixOrSuffix, "x").apply("ax").as_deref(),
        Some("a")
    );
    assert_eq!(
        m(How::Anywhere, "-c1-").apply("q-c1-sales").as_deref(),
        Some("qsales")
    );
    assert_eq!(m(How::Prefix, "1234-").apply("client1-1234-"), None);
}

#[test]
fn uris_split_into_endpoint_fields() {
    let mut t = Target::default();
    apply_uri(&mut t, "https://qm.example:8443/queuemetrics/").unwrap();
    assert_eq!(
        t.url(),
        "https://qm.example:8443/queuemetrics/jsonQLoaderApi.do"
    );
    apply_uri(&mut t, "http://10.0.0.5/qm/jsonQLoaderApi.do").unwrap();
    assert_eq!(t.url(), "http://10.0.0.5:80/qm/jsonQLoaderApi.do");
    for bad in [
        "ftp://x/",
        "http://:80/q",
        "http://h:0/q",
        "http://u:p@h/q",
        "h:8080",
    ] {
        assert!(apply_uri(&mut t, bad).is_err(), "{bad}");
    }
}

#[test]
fn one_partition_named_twice_must_agree() {
    let mut s = Split::default();
    let a = target("a", false);
    assert_eq!(s.intern(a.clone(), "r1", 1), Ok(0));
    assert_eq!(s.intern(a.clone(), "r2", 5), Ok(0));
    let mut b = a.clone();
    b.password = "other".into();
    let e = s.intern(b, "r3", 9).unwrap_err();
    assert!(e.contains("r3") && e.contains("password"), "{e}");
    assert!(!e.contains("other"), "never the password itself: {e}");
}
