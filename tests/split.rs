//! Multi-tenant split (issue 3): one queue_log, three strict QueueMetrics stand-ins, each
//! with its own credentials, context and token, fed by the rules file formats
//! integrators already have (Uniloader's JSON, wqloader's Perl list).

mod support;

use std::time::{Duration, Instant};
use support::fake_qm::{FakeConfig, FakeQm, Fault, StoredRow};
use support::{kill9, stop_within, Env, T0};

/// Three tenants and their servers; server 0 is `env.qm`.
struct Split {
    env: Env,
    servers: Vec<FakeQm>,
    rules: std::path::PathBuf,
}

const TOKENS: [&str; 3] = ["A1", "", "G3"];
const TZ: [i64; 3] = [3600, 0, -1800];

fn server(n: usize) -> FakeConfig {
    FakeConfig {
        user: format!("user{n}"),
        pass: format!("pa\"ss {n}"),
        context: format!("qm{n}"),
        ..FakeConfig::default()
    }
}

impl Split {
    fn new(format: Format) -> Split {
        let env = Env::with_server("-", server(0));
        let servers = vec![
            env.qm.clone(),
            FakeQm::start(server(1)),
            FakeQm::start(server(2)),
        ];
        let rules = env.dir.path().join(match format {
            Format::Json => "splitter.json",
            Format::Perl => "wqloader_cluster.pl",
        });
        let p: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        let text = match format {
            Format::Json => format!(
                r#"[
  {{"clientname": "acme", "uri": "http://127.0.0.1:{}/qm0", "login": "user0", "pass": "pa\"ss 0",
    "token": "A1", "matcher": ["acme-"], "match": "prefix", "removematch": true, "timezoneOffset": 3600}},
  {{"clientname": "beta", "uri": "http://127.0.0.1:{}/qm1/", "login": "user1", "pass": "pa\"ss 1",
    "token": "", "matcher": ["-beta"], "match": "suffix", "removematch": false}},
  {{"clientname": "gamma", "uri": "http://127.0.0.1:{}/qm2", "login": "user2", "pass": "pa\"ss 2",
    "token": "G3", "matcher": ["gamma"], "match": "any", "noactions": true, "timezoneOffset": -1800}},
  {{"clientname": "retired", "uri": "http://127.0.0.1:9/qm", "matcher": ["old-"], "disabled": true}}
]
"#,
                p[0], p[1], p[2]
            ),
            Format::Perl => format!(
                r#"# wqloader_cluster.pl, as it was on the old box
my @RULES = (
    {{ ruleName => 'acme',                      # client one
       queueStarts => 1, queueToken => 'acme-',
       agentStarts => 1, agentToken => "acme-",
       targetHost => '127.0.0.1', targetPort => {}, targetCtx => 'qm0',
       targetUser => 'user0', targetPass => 'pa"ss 0', targetToken => 'A1',
       timezoneOffset => 3600, }},
    {{ ruleName => 'beta', queueEnds => 1, queueToken => '-beta',
       targetHost => '127.0.0.1', targetPort => {}, targetCtx => '/qm1/',
       targetUser => 'user1', targetPass => "pa\"ss 1", targetToken => '', }},
    {{ ruleName => 'gamma', queueEnds => '1', queueToken => '-gamma',
       targetHost => "127.0.0.1", targetPort => '{}', targetCtx => 'qm2',
       targetUser => 'user2', targetPass => 'pa"ss 2', targetToken => G3,
       timezoneOffset => -1800 }},
);
1;
"#,
                p[0], p[1], p[2]
            ),
        };
        std::fs::write(&rules, text).unwrap();
        Split {
            env,
            servers,
            rules,
        }
    }

    fn args(&self) -> Vec<String> {
        vec!["--rules".into(), self.rules.to_str().unwrap().into()]
    }

    fn spawn(&self, extra: &[&str]) -> support::Daemon {
        let mut a = self.args();
        a.extend(extra.iter().map(|s| s.to_string()));
        self.env
            .spawn(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn rows(&self, n: usize) -> Vec<StoredRow> {
        self.servers[n].rows(TOKENS[n])
    }

    /// Waits until server `n` holds at least `count` rows; returns how long it took.
    fn wait(&self, n: usize, count: usize, limit: Duration) -> Duration {
        let start = Instant::now();
        while self.rows(n).len() < count {
            assert!(
                start.elapsed() < limit,
                "server {n} holds {} of {count} rows after {limit:?}; logs:\n{}",
                self.rows(n).len(),
                self.env.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// Waits until every server holds its rows, gives a duplicate time to show, stops
    /// qlship and checks every server holds exactly its rows.
    fn end_exact(&self, daemon: support::Daemon, expected: &[Vec<StoredRow>; 3]) {
        for (n, rows) in expected.iter().enumerate() {
            self.wait(n, rows.len(), Duration::from_secs(30));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop_within(daemon, Duration::from_secs(10));
        self.assert_exact(expected);
    }

    fn assert_exact(&self, expected: &[Vec<StoredRow>; 3]) {
        for (n, want) in expected.iter().enumerate() {
            support::assert_exact(&self.rows(n), want, &self.env.logs());
            assert_eq!(
                self.servers[n].violations(),
                Vec::<String>::new(),
                "server {n}"
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Perl,
}

/// A multi-tenant queue_log: row `i` belongs to a tenant (by queue, or by agent for
/// agent-only rows), to everyone (queue and agent NONE), or to nobody.
fn mt_rows(range: std::ops::Range<u64>, format: Format) -> (String, [Vec<StoredRow>; 3]) {
    let mut text = String::new();
    let mut expected: [Vec<StoredRow>; 3] = Default::default();
    let strip = format == Format::Json;
    for i in range {
        let t = T0 + i / 5;
        let call = format!("{}.{i}", T0 + i / 20);
        let (queue, agent, verb, params, to): (&str, &str, &str, Vec<String>, Vec<usize>) =
            match i % 10 {
                0 => ("NONE", "NONE", "QUEUESTART", vec![], vec![0, 1, 2]),
                1 => (
                    "acme-sales",
                    "NONE",
                    "ENTERQUEUE",
                    vec!["".into(), format!("555{i}"), "1".into()],
                    vec![0],
                ),
                2 => (
                    "acme-sales",
                    "Agent/101",
                    "CONNECT",
                    vec!["4".into(), format!("{call}x"), "3".into()],
                    vec![0],
                ),
                3 => (
                    "acme-sales",
                    "Agent/101",
                    "COMPLETEAGENT",
                    vec!["4".into(), "61".into(), "1".into()],
                    vec![0],
                ),
                4 => (
                    "NONE",
                    "acme-Agent/102",
                    "PAUSE",
                    vec!["lunch".into()],
                    vec![0],
                ),
                5 => (
                    "support-beta",
                    "NONE",
                    "ENTERQUEUE",
                    vec!["".into(), format!("666{i}"), "1".into()],
                    vec![1],
                ),
                6 => (
                    "support-beta",
                    "Agent/7",
                    "RINGNOANSWER",
                    vec!["15000".into()],
                    vec![1],
                ),
                7 => (
                    "q-gamma",
                    "NONE",
                    "ABANDON",
                    vec!["1".into(), "1".into(), "9".into()],
                    vec![2],
                ),
                8 => (
                    "q-gamma",
                    "SIP/300",
                    "CONNECT",
                    vec!["2".into(), format!("{call}y"), "1".into()],
                    vec![2],
                ),
                // Matches no rule; `old-` belongs to a disabled client in the JSON file.
                _ if i % 20 == 9 => ("zzz-other", "NONE", "ENTERQUEUE", vec!["".into()], vec![]),
                _ => ("old-client", "NONE", "ENTERQUEUE", vec!["".into()], vec![]),
            };
        let call = if queue == "NONE" {
            "NONE".to_string()
        } else {
            call
        };
        text.push_str(&format!(
            "{t}|{call}|{queue}|{agent}|{verb}|{}\n",
            params.join("|")
        ));
        let mut p = params;
        p.resize(5, String::new());
        for n in to {
            let (q, a) = match (strip, n, queue, agent) {
                (true, 0, "NONE", "NONE") => (queue, agent),
                (true, 0, "NONE", a) => (queue, a.strip_prefix("acme-").unwrap()),
                (true, 0, q, a) => (q.strip_prefix("acme-").unwrap(), a),
                _ => (queue, agent),
            };
            expected[n].push(StoredRow {
                time_id: (t as i64 + TZ[n]).to_string(),
                call_id: call.clone(),
                queue: q.into(),
                agent: a.into(),
                verb: verb.into(),
                params: p.clone(),
            });
        }
    }
    (text, expected)
}

fn extend(all: &mut [Vec<StoredRow>; 3], more: [Vec<StoredRow>; 3]) {
    for (a, m) in all.iter_mut().zip(more) {
        a.extend(m);
    }
}

#[test]
fn a_server_down_for_most_of_the_run_ends_exact_while_the_others_run_in_real_time() {
    let s = Split::new(Format::Json);
    let (text, mut expected) = mt_rows(0..2000, Format::Json);
    s.env.append(&text);
    let daemon = s.spawn(&[]);
    let counts = |e: &[Vec<StoredRow>; 3]| [e[0].len(), e[1].len(), e[2].len()];
    for (n, count) in counts(&expected).into_iter().enumerate() {
        s.wait(n, count, Duration::from_secs(30));
    }
    // beta's server goes away; the others must keep up with live traffic.
    s.servers[1].stop();
    let mut worst = Duration::ZERO;
    for burst in 0..16u64 {
        // 1000 rows a burst: beta's backlog soon exceeds the reader's read-ahead, which
        // must not hold the others back.
        let from = 2000 + burst * 1000;
        let (text, more) = mt_rows(from..from + 1000, Format::Json);
        extend(&mut expected, more);
        s.env.append(&text);
        let c = counts(&expected);
        worst = worst
            .max(s.wait(0, c[0], Duration::from_secs(10)))
            .max(s.wait(2, c[2], Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        worst < Duration::from_secs(3),
        "acme and gamma lagged {worst:?} behind the file while beta was down"
    );
    assert!(s.rows(1).len() < expected[1].len(), "beta was really down");
    s.servers[1].resume();
    s.end_exact(daemon, &expected);
    let logs = s.env.logs();
    assert!(
        logs.contains("target \"beta\""),
        "failures name the target:\n{logs}"
    );
    assert!(!logs.contains("pa\"ss"), "no password in the log:\n{logs}");
}

#[test]
fn a_server_answering_ko_does_not_stall_the_other_tenants() {
    let s = Split::new(Format::Json);
    s.servers[0].fail("*", Fault::KoWith("licence expired"), 1_000_000);
    let (text, expected) = mt_rows(0..3000, Format::Json);
    s.env.append(&text);
    let daemon = s.spawn(&[]);
    s.wait(1, expected[1].len(), Duration::from_secs(30));
    s.wait(2, expected[2].len(), Duration::from_secs(30));
    assert!(s.rows(0).is_empty(), "acme's server refuses everything");
    s.servers[0].clear_faults();
    s.end_exact(daemon, &expected);
    assert!(s.env.logs().contains("KO: licence expired"));
}

#[test]
fn kill9_during_the_run_still_ends_exact_on_all_three() {
    let s = Split::new(Format::Perl);
    let mut expected: [Vec<StoredRow>; 3] = Default::default();
    let mut next = 0;
    let mut rng = 0x5eed_u64;
    for round in 0..6 {
        let (text, more) = mt_rows(next..next + 1500, Format::Perl);
        next += 1500;
        extend(&mut expected, more);
        s.env.append(&text);
        // beta's server also drops some answers after storing: resync must decide.
        if round % 2 == 1 {
            s.servers[1].fail("insertAll", Fault::DropAfterStore, 1);
        }
        let daemon = s.spawn(&[]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(100 + rng % 600));
        kill9(daemon);
    }
    let a = s.args();
    let status = s
        .env
        .drain(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(status.success(), "{}", s.env.logs());
    s.assert_exact(&expected);
}

#[test]
fn heartbeats_reach_each_server_at_the_expected_rate_while_another_is_down() {
    let s = Split::new(Format::Json);
    s.servers[1].stop();
    let (text, _) = mt_rows(0..50, Format::Json);
    s.env.append(&text);
    let daemon = s.spawn(&["--heartbeat", "1"]);
    std::thread::sleep(Duration::from_millis(5500));
    let beats: Vec<usize> = s.servers.iter().map(|q| q.heartbeats()).collect();
    for n in [0, 2] {
        assert!(
            (4..=6).contains(&beats[n]),
            "server {n}: {} heartbeats in 5.5 s at 1/s; logs:\n{}",
            beats[n],
            s.env.logs()
        );
    }
    assert_eq!(beats[1], 0);
    // On each target's clock, like its rows.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for n in [0, 2] {
        for (token, time) in s.servers[n].heartbeat_log() {
            assert_eq!(token, TOKENS[n]);
            let shift = time.parse::<i64>().unwrap() - now;
            assert!(
                (shift - TZ[n]).abs() <= 7,
                "server {n}: heartbeat at {time}, now {now}"
            );
        }
    }
    s.servers[1].resume();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        s.servers[1].heartbeats() >= 1,
        "beta gets heartbeats once back"
    );
    stop_within(daemon, Duration::from_secs(10));
    for n in 0..3 {
        assert_eq!(
            s.servers[n].violations(),
            Vec::<String>::new(),
            "server {n}"
        );
    }
}

#[test]
fn check_rules_shows_targets_masked_and_what_each_would_receive() {
    let s = Split::new(Format::Json);
    let (text, expected) = mt_rows(0..1000, Format::Json);
    s.env.append(&text);
    let (code, out) = support::run_qlship(&[
        "check-rules".into(),
        s.rules.to_str().unwrap().into(),
        s.env.ql.to_str().unwrap().into(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("pa\"ss"), "passwords are masked:\n{out}");
    for (n, name) in ["acme", "beta", "gamma"].iter().enumerate() {
        let line = format!(
            "target {} {name:?} would receive {} rows",
            n + 1,
            expected[n].len()
        );
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    assert!(
        out.contains("target 4 \"retired\" would receive 0 rows (disabled)"),
        "{out}"
    );
    assert!(out.contains("100 rows with queue and agent NONE go to every enabled target; 50 rows match a disabled target; 50 rows match no rule"), "{out}");

    std::fs::write(&s.rules, "[\n {\"clientname\": \"x\",\n  \"uri\": \"http://h/q\", \"matcher\": [\"a\"], \"colour\": 1}\n]").unwrap();
    let (code, out) =
        support::run_qlship(&["check-rules".into(), s.rules.to_str().unwrap().into()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("splitter.json:3: colour: unknown key"),
        "{out}"
    );
    // The daemon refuses it the same way, before starting anything.
    let mut a = s.env.args(&["--rules", s.rules.to_str().unwrap()]);
    a.insert(0, "check".into());
    let (code, out) = support::run_qlship(&a);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--rules: ") && out.contains("colour"), "{out}");
}

#[test]
fn each_target_takes_its_partition_over_at_its_own_watermark_even_if_down_at_first_start() {
    // The box ran wqloaderd, which had uploaded part of the file to acme and beta
    // (gamma's partition is new). qlship starts with a new journal while beta's server
    // is down: acme and gamma must not wait, and beta must end exact once it is back.
    let s = Split::new(Format::Json);
    let (text, mut expected) = mt_rows(0..3000, Format::Json);
    s.env.append(&text);
    for (n, k) in [(0, 700), (1, 300)] {
        s.servers[n].preload(TOKENS[n], expected[n][..k].to_vec());
    }
    s.servers[1].stop();
    let daemon = s.spawn(&[]);
    s.wait(0, expected[0].len(), Duration::from_secs(30));
    s.wait(2, expected[2].len(), Duration::from_secs(30));
    // Rows written after the start are new for everyone, beta included.
    let (more_text, more) = mt_rows(3000..3500, Format::Json);
    extend(&mut expected, more);
    s.env.append(&more_text);
    s.wait(0, expected[0].len(), Duration::from_secs(30));
    assert!(s.rows(1).len() == 300, "beta's server is still down");
    s.servers[1].resume();
    s.end_exact(daemon, &expected);
    let logs = s.env.logs();
    assert!(
        logs.contains("target \"acme\": new journal: taking over partition \"A1\""),
        "{logs}"
    );
}

#[test]
fn loway_template_is_accepted_and_an_enabled_mysql_target_is_refused_plainly() {
    // tests/support/loway_splitter.json is shaped exactly as Loway's published Ansible
    // template renders (src/rules/json.rs says where it comes from).
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/loway_splitter.json");
    let env = support::Env::new();
    env.append("1700000000|1.1|sales-acme|Agent/1|CONNECT|1|2|3\n1700000001|1.2|NONE|Agent/2-beta|PAUSE|x\n1700000002|1.3|other|Agent/3|PAUSE|y\n");
    let (code, out) = support::run_qlship(&[
        "check-rules".into(),
        template.to_str().unwrap().into(),
        env.ql.to_str().unwrap().into(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("target 3 \"DUMMY CLOSING ENTRY\": file:q-client00.txt token \"\""),
        "{out}"
    );
    assert!(out.contains(", DISABLED"), "{out}");
    assert!(!out.contains("s3cret"), "passwords are masked:\n{out}");
    for line in [
        "target 1 \"acme\" would receive 1 rows",
        "target 2 \"beta\" would receive 1 rows",
        "target 3 \"DUMMY CLOSING ENTRY\" would receive 0 rows (disabled)",
        "0 rows match a disabled target; 1 rows match no rule",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // The same file with the closing entry enabled and pointed at MySQL: qlship stops
    // before contacting anything (as the daemon does), saying what to use instead.
    let text = std::fs::read_to_string(&template)
        .unwrap()
        .replace(
            "\"file:q-client00.txt\"",
            "\"mysql:qm:Pa55@tcp(10.0.0.5:3306)/queuemetrics\"",
        )
        .replace("\"disabled\": true", "\"disabled\": false")
        .replace("\"matcher\": [\"\"]", "\"matcher\": [\"x\"]");
    let rules = env.dir.path().join("splitter.json");
    std::fs::write(&rules, text).unwrap();
    let mut a = env.args(&["--rules", rules.to_str().unwrap()]);
    a.insert(0, "check".into());
    let (code, out) = support::run_qlship(&a);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("splitter.json:33: uri: a mysql: address is Uniloader's MySQL back-end"),
        "{out}"
    );
    assert!(!out.contains("Pa55"), "{out}");
}

/// Issue 15, case 7: a tenant's target is edited (its context changes) while it has a
/// backlog. qlship used to drop the backlog with a warning; now it refuses to start
/// (exit 2), naming the target and its backlog, until the operator says to drop it.
#[test]
fn an_edited_target_with_a_backlog_stops_the_start_until_the_operator_drops_it() {
    let s = Split::new(Format::Json);
    s.servers[2].stop();
    let (text, expected) = mt_rows(0..3000, Format::Json);
    s.env.append(&text);
    let daemon = s.spawn(&[]);
    s.wait(0, expected[0].len(), Duration::from_secs(30));
    s.wait(1, expected[1].len(), Duration::from_secs(30));
    stop_within(daemon, Duration::from_secs(10));
    let rules = std::fs::read_to_string(&s.rules).unwrap();
    std::fs::write(&s.rules, rules.replace("/qm2\"", "/qm2-new\"")).unwrap();
    let mut refused = s.spawn(&[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = refused.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "qlship started and dropped the backlog"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let logs = s.env.logs();
    assert_eq!(status.code(), Some(2), "{logs}");
    let backlog = format!("still has {} rows to upload", expected[2].len());
    assert!(logs.contains(&backlog) && logs.contains("/qm2/"), "{logs}");
    assert!(!logs.contains("were dropped from the spool"), "{logs}");
    // The operator says so: the backlog goes, loudly, and qlship runs.
    let daemon = s.spawn(&["--drop-backlog"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.env.logs().contains("were dropped from the spool") {
        assert!(Instant::now() < deadline, "{}", s.env.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_within(daemon, Duration::from_secs(10));
}

/// Issue 15, case 7: a tenant down for days fills only its own share of the spool. The
/// others keep getting every row (before, the shared --spool-max filled and reading
/// paused for everyone); the log says loudly what the dead tenant no longer gets.
#[test]
fn a_dead_tenant_fills_only_its_share_of_the_spool_and_never_pauses_the_others() {
    let s = Split::new(Format::Json);
    s.servers[2].stop();
    let daemon = s.spawn(&["--spool-max", "192K"]);
    let mut all: [Vec<StoredRow>; 3] = Default::default();
    for round in 0..6u64 {
        let (text, rows) = mt_rows(round * 3000..(round + 1) * 3000, Format::Json);
        s.env.append(&text);
        extend(&mut all, rows);
        s.wait(0, all[0].len(), Duration::from_secs(30));
        s.wait(1, all[1].len(), Duration::from_secs(30));
    }
    let logs = s.env.logs();
    // (The others' own read-ahead may still touch the cap for a moment in a burst: the
    // waits above are what shows they were never held up.)
    assert!(logs.contains("NOT kept for it"), "{logs}");
    // Back up: it gets what its share held, never a row twice.
    s.servers[2].resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.env.logs().contains("back under its share") {
        assert!(Instant::now() < deadline, "{}", s.env.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_within(daemon, Duration::from_secs(10));
    let got = s.rows(2);
    assert!(
        !got.is_empty() && got.len() < all[2].len(),
        "{} of {}",
        got.len(),
        all[2].len()
    );
    let mut seen = std::collections::HashSet::new();
    assert!(
        got.iter().all(|r| seen.insert(r.clone())),
        "a row stored twice"
    );
    assert_eq!(s.servers[2].violations(), Vec::<String>::new());
    support::assert_exact(&s.rows(0), &all[0], &s.env.logs());
    support::assert_exact(&s.rows(1), &all[1], &s.env.logs());
}
