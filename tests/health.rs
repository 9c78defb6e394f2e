//! Health over time, rendered from scripted figures: the status page from a 28-hour
//! history (every figure and graph coordinate checked), the metrics file read by a
//! strict exposition-format parser, and that parser's own refusals. The running
//! daemon's side is in tests/health_daemon.rs.

#[path = "health/html.rs"]
mod html;
#[path = "health/prom_format.rs"]
mod prom_format;

use html::{areas, figure};
use qlship::health::history::{bucket_of, History, Sample, POINTS, STEP_SECS};
use qlship::health::page::{self, PageTarget};
use qlship::health::{meter, prom, target_key};
use qlship::status::{RequestCount, Snapshot, TargetStatus};
use std::path::Path;

/// 2025-11-30 18:01:30 UTC, 90 s into its bucket.
const NOW: i64 = 1_764_525_600 + 90;

fn scripted_snapshot() -> Snapshot {
    Snapshot {
        version: "0.1.0".into(),
        pid: 4242,
        started: NOW - 86_400,
        written: NOW,
        queue_log: "/var/log/asterisk/queue_log".into(),
        reading: "/var/log/asterisk/queue_log".into(),
        offset: 987_654,
        reader: "reading (idle)".into(),
        spool_rows: 42,
        spool_bytes: 12_345,
        spool_max: 64 << 20,
        skipped_lines: 2,
        unrouted_rows: 7,
        rows_read: 123_456,
        targets: vec![
            TargetStatus {
                name: "sales".into(),
                url: "https://qm.example.com:443/queuemetrics/jsonQLoaderApi.do".into(),
                token: "P001".into(),
                failing_since: Some(NOW - 300),
                last_success: Some(NOW - 301),
                last_error: Some("KO: Partition <P001> is locked".into()),
                last_error_at: Some(NOW - 5),
                acked_total: 1_500_000,
                acked_today: 1000,
                acked_since_start: 25_000,
                backlog_rows: 42,
                backlog_secs: 7260,
                watermark: Some(1_764_500_000),
                last_heartbeat: Some(NOW - 65),
                last_answer: Some(NOW - 5),
                resyncs: 2,
                requests: vec![
                    RequestCount {
                        command: "checkRow".into(),
                        outcome: "ok".into(),
                        count: 7,
                    },
                    RequestCount {
                        command: "checkRow".into(),
                        outcome: "transport_error".into(),
                        count: 1,
                    },
                    RequestCount {
                        command: "insertAll".into(),
                        outcome: "ok".into(),
                        count: 3,
                    },
                ],
                feedback_done: 6,
                feedback_ok: 3,
                feedback_failed: 1,
                feedback_refused: 2,
                feedback_interrupted: 1,
                ..Default::default()
            },
            TargetStatus {
                name: "support \"2nd\"".into(),
                url: "http://10.0.0.9:8080/queuemetrics/jsonQLoaderApi.do".into(),
                token: "P002".into(),
                last_success: Some(NOW - 2),
                last_answer: Some(NOW - 2),
                stalled_since: Some(NOW - 700),
                backlog_rows: 900,
                backlog_secs: 650,
                ..Default::default()
            },
        ],
    }
}

/// 28 hours for target 0: two samples per point, 300 rows acknowledged in each, a
/// backlog of 20 (1,234 once, with a lag of 95 s), and two hours while qlship was
/// stopped. Target 1 has no history (it was just added).
fn scripted_history(key: &str) -> History {
    let mut h = History::default();
    let first = bucket_of(NOW) - POINTS as i64 + 1;
    let mut acked = 1_000_000;
    for k in 0..POINTS as i64 {
        if (200..272).contains(&k) {
            continue;
        }
        for (offset, spike) in [(10, k == 500), (60, false)] {
            acked += 150;
            h.observe(
                (first + k) * STEP_SECS + offset,
                &[Sample {
                    key,
                    backlog_rows: if spike { 1234 } else { 20 },
                    lag_secs: if spike { 95 } else { 1 },
                    acked_total: acked,
                }],
            );
        }
    }
    h
}

fn render_scripted_page() -> String {
    let snap = scripted_snapshot();
    let key = target_key(&snap.targets[0]);
    let history = scripted_history(&key);
    let targets = [
        PageTarget {
            status: &snap.targets[0],
            series: history.series(&key),
            up_since: None,
        },
        PageTarget {
            status: &snap.targets[1],
            series: None,
            up_since: Some(NOW - 3600),
        },
    ];
    page::render(&snap, &targets, NOW, false)
}

#[test]
fn the_page_shows_the_scripted_figures_and_graphs() {
    let html = render_scripted_page();
    // Kept for a look in a browser (tests/health/screenshot).
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.html");
    std::fs::write(&out, &html).unwrap();

    assert!(!html.contains("<script"), "no script");
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "nothing external"
    );
    assert_eq!(figure(&html, "written"), "2025-11-30 18:01:30 UTC");
    assert_eq!(figure(&html, "rows-read"), "123,456");
    assert_eq!(
        figure(&html, "spool"),
        "42 rows, 12,345 of 67,108,864 bytes"
    );

    assert_eq!(
        figure(&html, "t0-state"),
        "down since 2025-11-30 17:56:30 UTC"
    );
    assert_eq!(figure(&html, "t0-backlog-rows"), "42 rows");
    assert_eq!(figure(&html, "t0-lag"), "2 h 01 min");
    // The last complete point: 300 rows in 100 s.
    assert_eq!(figure(&html, "t0-rate"), "180 rows/min");
    assert_eq!(
        figure(&html, "t0-acked"),
        "1,000 today (UTC), 25,000 since start, 1,500,000 in total"
    );
    assert_eq!(
        figure(&html, "t0-last-success"),
        "2025-11-30 17:56:29 UTC (5 min ago)"
    );
    assert_eq!(
        figure(&html, "t0-last-error"),
        "2025-11-30 18:01:25 UTC (5 s ago): KO: Partition &lt;P001&gt; is locked"
    );
    assert_eq!(
        figure(&html, "t0-watermark"),
        "2025-11-30 10:53:20 UTC (1764500000)"
    );
    assert_eq!(
        figure(&html, "t0-heartbeat"),
        "2025-11-30 18:00:25 UTC (65 s ago)"
    );
    assert_eq!(
        figure(&html, "t1-state"),
        "stalled: rows wait and the server answers, but none acknowledged since 2025-11-30 17:49:50 UTC"
    );
    assert_eq!(figure(&html, "t1-backlog-rows"), "900 rows");
    assert_eq!(figure(&html, "t1-lag"), "10 min");
    assert_eq!(figure(&html, "t1-rate"), "no complete point yet");
    assert_eq!(figure(&html, "t1-heartbeat"), "never (since start)");
    assert!(
        html.contains("support &quot;2nd&quot;"),
        "names are escaped"
    );

    // Graphs: one point per 100 s from x = 56, y from 108 (zero) up 100 units to a
    // round maximum. The two hours without qlship split each graph in two.
    let backlog = areas(&html, "t0-graph-backlog");
    assert_eq!(backlog.len(), 2, "{backlog:?}");
    assert!(
        backlog[0].starts_with("M56,108L56,107.0L57,107.0"),
        "{}",
        backlog[0]
    );
    assert!(
        backlog[0].ends_with("L255,107.0L255,108Z"),
        "{}",
        backlog[0]
    );
    assert!(
        backlog[1].starts_with("M328,108L328,107.0"),
        "{}",
        backlog[1]
    );
    // The spike at point 500: 1,234 rows on a scale to 2,000.
    assert!(
        backlog[1].contains("L555,107.0L556,46.3L557,107.0"),
        "{}",
        backlog[1]
    );
    assert!(
        backlog[1].ends_with("L1055,107.0L1055,108Z"),
        "{}",
        backlog[1]
    );
    assert!(html.contains(r#"id="t0-graph-backlog"><figcaption>"#));
    let scale = |id: &str| {
        let at = html.find(&format!("id=\"{id}\"")).unwrap();
        let rest = &html[at..];
        let m = rest.find("data-max=\"").unwrap() + 10;
        rest[m..m + rest[m..].find('"').unwrap()].to_string()
    };
    assert_eq!(scale("t0-graph-backlog"), "2000");
    assert_eq!(scale("t0-graph-lag"), "100");
    assert!(areas(&html, "t0-graph-lag")[1].contains("L556,13.0"));
    // Throughput: 180 rows/min (the first point only saw half its rows: 90).
    assert_eq!(scale("t0-graph-rate"), "200");
    let rate = areas(&html, "t0-graph-rate");
    assert!(
        rate[0].starts_with("M56,108L56,63.0L57,18.0"),
        "{}",
        rate[0]
    );
    assert!(
        rate[1].ends_with("L1054,18.0L1055,18.0L1055,108Z"),
        "{}",
        rate[1]
    );
    // Time labels every 6 h UTC: the window starts at 14:15 the day before; the last
    // tick, at 18:00 today, is the point in progress, under "now".
    let start = html.find("id=\"t0-graph-backlog\"").unwrap();
    let graph = &html[start..start + html[start..].find("</figure>").unwrap()];
    let labels: Vec<&str> = graph
        .split("text-anchor=\"middle\">")
        .skip(1)
        .map(|s| &s[..5])
        .collect();
    assert_eq!(labels, ["18:00", "00:00", "06:00", "12:00"]);
    assert_eq!(graph.matches("<line class=\"tick\"").count(), 5);
    assert!(figure(&html, "t1-graph-backlog").contains("no history yet"));
    assert!(areas(&html, "t1-graph-backlog").is_empty());
}

#[test]
fn the_metrics_of_a_scripted_snapshot_parse_strictly_with_their_values() {
    let snap = scripted_snapshot();
    let text = prom::render(
        &snap,
        &prom::Process {
            io: Some(meter::ProcIo {
                write_bytes: 40_960,
                wchar: 99_999,
            }),
            fsyncs: 17,
        },
    );
    let e = prom_format::parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    let sales = [("target", "sales"), ("token", "P001")];
    let support = [("target", "support \"2nd\""), ("token", "P002")];
    let v = |name: &str, labels: &[(&str, &str)]| {
        e.value(name, labels)
            .unwrap_or_else(|| panic!("no single {name} {labels:?}\n{text}"))
    };
    assert_eq!(v("qlship_rows_read_total", &[]), 123_456.0);
    assert_eq!(v("qlship_spool_bytes", &[]), 12_345.0);
    assert_eq!(v("qlship_storage_write_bytes_total", &[]), 40_960.0);
    assert_eq!(v("qlship_write_call_bytes_total", &[]), 99_999.0);
    assert_eq!(v("qlship_fsyncs_total", &[]), 17.0);
    assert_eq!(v("qlship_info", &[("version", "0.1.0")]), 1.0);
    assert_eq!(v("qlship_up", &sales), 0.0);
    assert_eq!(v("qlship_up", &support), 1.0);
    assert_eq!(v("qlship_stalled", &sales), 0.0);
    assert_eq!(v("qlship_stalled", &support), 1.0);
    assert_eq!(v("qlship_rows_acknowledged_total", &sales), 1_500_000.0);
    assert_eq!(v("qlship_backlog_rows", &support), 900.0);
    assert_eq!(v("qlship_lag_seconds", &sales), 7260.0);
    assert_eq!(
        v("qlship_last_success_timestamp_seconds", &sales),
        (NOW - 301) as f64
    );
    assert_eq!(
        v("qlship_watermark_timestamp_seconds", &sales),
        1_764_500_000.0
    );
    assert!(
        e.value("qlship_watermark_timestamp_seconds", &support)
            .is_none(),
        "unknown: absent, not 0"
    );
    assert_eq!(v("qlship_resyncs_total", &sales), 2.0);
    assert_eq!(v("qlship_resync_check_rows_total", &sales), 8.0);
    let req = |cmd: &str, outcome: &str| {
        v(
            "qlship_requests_total",
            &[sales[0], sales[1], ("command", cmd), ("outcome", outcome)],
        )
    };
    assert_eq!(req("checkRow", "ok"), 7.0);
    assert_eq!(req("checkRow", "transport_error"), 1.0);
    assert_eq!(req("insertAll", "ok"), 3.0);
    let fb = |result: &str| {
        v(
            "qlship_feedback_actions_total",
            &[sales[0], sales[1], ("result", result)],
        )
    };
    assert_eq!(
        [fb("ok"), fb("failed"), fb("refused"), fb("interrupted")],
        [3.0, 1.0, 2.0, 1.0]
    );
    for f in &e.families {
        assert!(f.name.starts_with("qlship_"), "{}", f.name);
        assert!(!f.help.is_empty(), "{} has no HELP", f.name);
    }
    // Without task I/O accounting the byte counters are absent, not zero.
    let text = prom::render(&snap, &prom::Process::default());
    let e = prom_format::parse(&text).unwrap();
    assert!(e.value("qlship_storage_write_bytes_total", &[]).is_none());
}

#[test]
fn the_strict_parser_refuses_what_the_format_forbids() {
    let good = "# HELP a_total A thing.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\na_total 4 1700000000000\n# TYPE b gauge\nb -1.5e3\n";
    let e = prom_format::parse(good).unwrap();
    assert_eq!(e.value("a_total", &[("y", "q\"\\\n")]), Some(3.0));
    assert_eq!(e.value("b", &[]), Some(-1500.0));
    for bad in [
        "# TYPE a_total counter\na_total 1", // no final line feed
        "a 1\n",                             // no TYPE
        "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na 2\n", // not grouped
        "# TYPE a gauge\na 1\n# HELP a late\n", // HELP after samples
        "# TYPE a gauge\n# TYPE a gauge\na 1\n", // second TYPE
        "# TYPE a countr\na 1\n",            // unknown type
        "# TYPE a counter\na 1\n",           // counter without _total
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n", // same series twice
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n", // label twice
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",  // bad escape
        "# TYPE a gauge\na{x=\"1} 1\n",      // unterminated
        "# TYPE a gauge\na{__x=\"1\"} 1\n",  // reserved label
        "# TYPE a gauge\na{1x=\"1\"} 1\n",   // bad label name
        "# TYPE a gauge\na one\n",           // not a number
        "# TYPE a-b gauge\na-b 1\n",         // bad metric name
        "# TYPE a gauge\na 1 2 3\n",         // trailing field
        "# HELP a bad \\t escape\n# TYPE a gauge\na 1\n", // bad HELP escape
    ] {
        assert!(prom_format::parse(bad).is_err(), "accepted: {bad:?}");
    }
}
