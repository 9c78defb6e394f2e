//! Every parser fed from outside, under property tests that run with `cargo test`: the
//! queue_log line parser and splitter, the checkFb answer decoder (and the AMI policy
//! behind it), the AMI reader, and both rules parsers. None may panic, allocate beyond
//! a bound proportional to its input (the AMI reader: beyond a constant, whatever the
//! stream), or take long. Inputs are random bytes and random sequences of each
//! grammar's own tokens, so that the deep paths are reached too.
//!
//! Allocation is measured per thread by this binary's own allocator (tests run on
//! several threads; each case allocates on its own).

use proptest::prelude::*;
use qlship::feedback::{self, MessageReader, MAX_AMI_LINE, MAX_AMI_MESSAGE};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`; returns its result, the peak of bytes it held at once beyond what was held
/// before, and how long it took.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    (out, PEAK.with(Cell::get) - base, took)
}

/// A generous bound on time: what a parser of a few KiB must never come near.
const SLOW: Duration = Duration::from_secs(2);

/// Text made of `tokens` (and a little noise), up to `n` of them.
fn tokens(
    tokens: impl Into<std::borrow::Cow<'static, [&'static str]>>,
    n: usize,
) -> impl Strategy<Value = String> {
    let token = prop_oneof![
        8 => proptest::sample::select(tokens).prop_map(str::to_string),
        1 => "[a-zA-Z0-9 ]{0,6}",
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(token, 0..n).prop_map(|v| v.concat())
}

/// The Perl rules' grammar and some values; [`perl_tokens`] adds the keys the parser
/// knows (the crate's own list, so a key added there is fuzzed too).
const PERL_GRAMMAR: &[&str] = &[
    "my @rules = (",
    ");",
    "1;",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=>",
    ",",
    "'",
    "\"",
    "\\",
    "#",
    "\n",
    " ",
    "$x",
    "1",
    "0",
    "-3600",
    "99999999999999999999",
    "'q1'",
    "'h'",
    "_",
];

fn perl_tokens() -> Vec<&'static str> {
    let keys = qlship::rules::PERL_KEYS.iter();
    PERL_GRAMMAR.iter().chain(keys).copied().collect()
}

const JSON: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ":",
    ",",
    "\"",
    "\\",
    "\\u",
    "00e9",
    "\\ud800",
    "\n",
    " ",
    "true",
    "false",
    "null",
    "1",
    "-0.5",
    "1e999",
    "\"clientname\"",
    "\"uri\"",
    "\"login\"",
    "\"pass\"",
    "\"token\"",
    "\"matcher\"",
    "\"match\"",
    "\"prefix\"",
    "\"suffix\"",
    "\"any\"",
    "\"removematch\"",
    "\"disabled\"",
    "\"noactions\"",
    "\"timezoneOffset\"",
    "\"http://h:8080/qm\"",
    "\"https://[::1]:99999/\"",
    "\"mysql://u:p@h/db\"",
    "\"q-\"",
];

const ANSWER: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\\n",
    "\\r",
    "\\u0000",
    "\"resultStatus\"",
    "\"OK\"",
    "\"KO: x\"",
    "\"result\"",
    "\"actions\"",
    "\"id\"",
    "\"host\"",
    "\"port\"",
    "\"localhost\"",
    "\"127.0.0.1\"",
    "5038",
    "99999",
    "\"Action: Originate\\n",
    "Application: System\\n",
    "Application: ChanSpy\\n",
    "Variable: SHELL(id)\\n",
    "Value: ${X}\\n",
    "Context: c\\n",
    "Channel: Local/1@c\\n",
    "Data: $[1]\\n",
    "Action: QueueAdd\\n",
    "Action: Getvar\\n",
    "Action: Setvar\\n",
    "Action: Login\\n",
    "\"",
    "(",
    " (",
    "$",
    "${",
    "$ {",
];

const AMI: &[&str] = &[
    "Asterisk Call Manager/9.0.0",
    "\r\n",
    "\n",
    "\r",
    "Response: ",
    "Success",
    "Error",
    "Event: ",
    "ActionID: ",
    "qlship-1-1",
    "Message: ",
    ":",
    " ",
    "Output",
    "/",
    "é",
];

const ACTIONS: &[&str] = &[
    "Originate",
    "Getvar",
    "Setvar",
    "QueueAdd",
    "Redirect",
    "Atxfer",
    "Ping",
    "getvar",
];
const HEADERS: &[&str] = &[
    "Application",
    "Data",
    "Variable",
    "Value",
    "Context",
    "Channel",
    "Exten",
    "Queue",
    "variable",
    "X-Other",
    "Command",
];
const VALUES: &[&str] = &[
    "SHELL", "shell", "FILE", "(", " (", ")", "${", "$ {", "$[", "$", "}", "id", "=", ",",
    "ChanSpy", "System", "Local/1@", "agents", " ", "CALLERID", "\t", "/",
];

/// An AMI transaction as QueueMetrics might write one, with hostile values mixed in.
fn transaction() -> impl Strategy<Value = String> {
    let line = (proptest::sample::select(HEADERS), tokens(VALUES, 8))
        .prop_map(|(k, v)| format!("{k}: {v}\n"));
    (
        proptest::sample::select(ACTIONS),
        proptest::collection::vec(line, 0..6),
    )
        .prop_map(|(a, lines)| format!("Action: {a}\n{}", lines.concat()))
}

/// The oracle: a `(` whose nearest non-blank character before it belongs to a name.
fn calls_a_function(value: &str) -> bool {
    value.match_indices('(').any(|(i, _)| {
        value[..i]
            .trim_end()
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A valid file of `n` rules in either format, to be damaged by [`edits`].
fn valid_rules(json: bool, n: usize) -> String {
    if json {
        let entry = |i: usize| {
            format!(
                "{{\"clientname\": \"c{i}\", \"uri\": \"https://h{i}:8443/qm\", \"login\": \"u\", \"pass\": \"p\\\"w\", \"token\": \"P{i}\", \"matcher\": [\"q{i}-\", \"x\"], \"match\": \"any\", \"removematch\": true, \"timezoneOffset\": -3600, \"noactions\": false}}"
            )
        };
        format!(
            "[\n{}\n]\n",
            (0..n).map(entry).collect::<Vec<_>>().join(",\n")
        )
    } else {
        let rule = |i: usize| {
            format!(
                "  {{ ruleName => 'r{i}', queueStarts => 1, queueEnds => 0, queueToken => \"q{i}\", agentStarts => 0, agentEnds => 1, agentToken => 'a{i}', targetHost => 'h{i}', targetPort => 8080, targetCtx => 'qm', targetUser => 'u', targetPass => 'it\\'s', targetToken => 'P{i}', timezoneOffset => -3_600 }}, # rule {i}\n"
            )
        };
        format!(
            "my @rules = (\n{});\n1;\n",
            (0..n).map(rule).collect::<String>()
        )
    }
}

/// Random damage: (position, how many bytes to delete, what to insert), applied in turn
/// at char boundaries.
fn edits() -> impl Strategy<Value = Vec<(usize, usize, String)>> {
    let insert = prop_oneof![
        Just(String::new()),
        proptest::sample::select(perl_tokens()).prop_map(str::to_string),
        proptest::sample::select(JSON).prop_map(str::to_string),
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec((any::<usize>(), 0usize..12, insert), 1..6)
}

fn damage(mut text: String, edits: &[(usize, usize, String)]) -> String {
    for (at, delete, insert) in edits {
        let mut start = at % (text.len() + 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + delete).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        text.replace_range(start..end, insert);
    }
    text
}

fn defaults() -> qlship::rules::Target {
    qlship::rules::Target {
        port: 8080,
        context: "queuemetrics".into(),
        ..Default::default()
    }
}

proptest! {
    #[test]
    fn queue_log_lines_parse_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (_, peak, took) = measured(|| qlship::parse::parse_line(&bytes).map(|r| r.time));
        prop_assert!(peak <= 8 * bytes.len() + 4096, "{peak} bytes for {}", bytes.len());
        prop_assert!(took < SLOW);
        let (pieces, peak, _) = measured(|| {
            qlship::lines::split(&bytes, 0, false, true, 64).pieces.len()
        });
        prop_assert!(pieces <= 64);
        prop_assert!(peak <= 64 * 64 + 4096, "{peak}");
    }

    #[test]
    fn check_fb_answers_decode_within_bounds(text in tokens(ANSWER, 300)) {
        let policy = feedback::Policy::default();
        let (decoded, peak, took) = measured(|| {
            let answer = qlship::protocol::parse_answer(text.as_bytes());
            if let Ok(a) = &answer {
                for c in a.actions.iter().flatten() {
                    let _ = feedback::vet(c, &policy);
                }
            }
            answer.map(|a| a.actions.len())
        });
        if let Ok(n) = decoded {
            prop_assert!(n <= feedback::MAX_CONTAINERS);
        }
        prop_assert!(peak <= 128 * text.len() + 16 * 1024, "{peak} bytes for {}", text.len());
        prop_assert!(took < SLOW);
    }

    #[test]
    fn the_ami_policy_judges_any_transaction(text in transaction()) {
        let c = feedback::ActionContainer {
            id: "1".into(),
            host: "localhost".into(),
            port: 5038,
            actions: vec![text.clone()],
        };
        let (vetted, _, took) = measured(|| feedback::vet(&c, &feedback::Policy::default()));
        prop_assert!(took < SLOW);
        // Whatever passes carries no function call or expansion in a header that
        // Asterisk evaluates (Variable/Value of Setvar, Getvar, Originate).
        if let Ok(v) = vetted {
            for t in &v.transactions {
                let evaluates = ["Setvar", "Getvar", "Originate"]
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(t.action()));
                for (k, value) in &t.fields {
                    if evaluates && (k.eq_ignore_ascii_case("Variable") || k.eq_ignore_ascii_case("Value")) {
                        prop_assert!(!value.contains("${") && !value.contains("$["), "{value}");
                        prop_assert!(!calls_a_function(value), "{value}");
                    }
                    if k.eq_ignore_ascii_case("Application") {
                        prop_assert!(value.eq_ignore_ascii_case("ChanSpy") || value.eq_ignore_ascii_case("ExtenSpy"));
                    }
                }
            }
        }
    }

    #[test]
    fn the_ami_reader_holds_a_bounded_amount_whatever_the_stream(
        pieces in proptest::collection::vec(
            prop_oneof![
                6 => proptest::sample::select(AMI).prop_map(|s| s.as_bytes().to_vec()),
                1 => proptest::collection::vec(any::<u8>(), 0..64),
                // Long runs without a newline, and many short lines.
                1 => (1usize..20_000).prop_map(|n| vec![b'a'; n]),
                1 => (1usize..400).prop_map(|n| b"K: v\r\n".repeat(n)),
            ],
            0..200,
        ),
        chunk in 1usize..4096,
    ) {
        let stream: Vec<u8> = pieces.concat();
        let mut reader = MessageReader::default();
        let (_, peak, took) = measured(|| {
            for part in stream.chunks(chunk) {
                match reader.feed(part) {
                    Ok(_) => assert!(reader.held() <= MAX_AMI_LINE + MAX_AMI_MESSAGE),
                    Err(_) => break,
                }
            }
        });
        prop_assert!(took < SLOW);
        // One line, one message and one chunk's messages, with their overhead.
        prop_assert!(peak <= 4 * (MAX_AMI_LINE + MAX_AMI_MESSAGE) + 64 * chunk, "{peak} for {} bytes", stream.len());
    }

    #[test]
    fn perl_rules_parse_within_bounds(text in tokens(perl_tokens(), 400)) {
        // Not starting with `[` or `{`: the Perl parser's.
        let text = format!("#\n{text}");
        let (_, peak, took) = measured(|| qlship::rules::parse(&text, &defaults()).map(|s| s.rules.len()));
        prop_assert!(took < SLOW);
        prop_assert!(peak <= 128 * text.len() + 16 * 1024, "{peak} bytes for {}", text.len());
    }

    #[test]
    fn json_rules_parse_within_bounds(text in tokens(JSON, 400)) {
        let text = format!("[{text}");
        let (_, peak, took) = measured(|| qlship::rules::parse(&text, &defaults()).map(|s| s.rules.len()));
        prop_assert!(took < SLOW);
        prop_assert!(peak <= 128 * text.len() + 16 * 1024, "{peak} bytes for {}", text.len());
    }

    #[test]
    fn damaged_rules_files_parse_within_bounds(json in any::<bool>(), n in 1usize..6, edits in edits()) {
        let valid = valid_rules(json, n);
        let parsed = qlship::rules::parse(&valid, &defaults());
        prop_assert!(parsed.is_ok(), "the undamaged file must parse: {:?}\n{}", parsed.err(), valid);
        let text = damage(valid, &edits);
        let (_, peak, took) = measured(|| qlship::rules::parse(&text, &defaults()).map(|s| s.rules.len()));
        prop_assert!(took < SLOW);
        prop_assert!(peak <= 128 * text.len() + 16 * 1024, "{peak} bytes for {}", text.len());
    }

    #[test]
    fn damaged_check_fb_answers_decode_within_bounds(edits in edits(), n in 1usize..4) {
        let container = |i: usize| format!(
            r#"{{"id":"{i}","host":"127.0.0.1","port":"5038","actions":["Action: Login\nUsername: a\nSecret: s","Action: Originate\nChannel: Local/1@agents\nApplication: ChanSpy\nData: SIP/1,q\nVariable: A=1"]}}"#
        );
        let valid = format!(
            r#"{{"resultStatus":"OK","result":"","actions":[{}]}}"#,
            (0..n).map(container).collect::<Vec<_>>().join(",")
        );
        let good = qlship::protocol::parse_answer(valid.as_bytes()).unwrap();
        prop_assert!(good.actions.iter().all(|c| c.as_ref().is_ok_and(|c| feedback::vet(c, &feedback::Policy::default()).is_ok())));
        let text = damage(valid, &edits);
        let (_, peak, took) = measured(|| {
            qlship::protocol::parse_answer(text.as_bytes()).map(|a| {
                a.actions
                    .iter()
                    .flatten()
                    .filter(|c| feedback::vet(c, &feedback::Policy::default()).is_ok())
                    .count()
            })
        });
        prop_assert!(took < SLOW);
        prop_assert!(peak <= 128 * text.len() + 16 * 1024, "{peak} bytes for {}", text.len());
    }

    #[test]
    fn rules_that_parse_are_within_the_counts(n in 0usize..40, disabled in any::<bool>()) {
        let entry = |i: usize| format!(
            "{{\"clientname\":\"c{i}\",\"uri\":\"http://h{i}:8080/qm\",\"token\":\"P{i}\",\"matcher\":[\"q{i}-\"],\"match\":\"prefix\",\"disabled\":{disabled}}}"
        );
        let text = format!("[{}]", (0..n).map(entry).collect::<Vec<_>>().join(","));
        if let Ok(split) = qlship::rules::parse(&text, &defaults()) {
            prop_assert!(split.rules.len() <= qlship::rules::MAX_RULES);
            prop_assert!(split.targets.iter().filter(|t| !t.disabled).count() <= qlship::rules::MAX_TARGETS);
        }
    }
}
