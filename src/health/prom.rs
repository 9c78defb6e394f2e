//! `--run-dir/qlship.prom`: the status in Prometheus' text exposition format, for
//! node_exporter's textfile collector (no listening port on the box). Pure: rendered
//! from the status snapshot and the process figures of [`super::meter`].
//!
//! Per target the labels are `target` (the rule's name, or the endpoint in single-target
//! mode) and `token`. Counters count since qlship started, except
//! `qlship_rows_acknowledged_total`, `qlship_lines_skipped_total` and
//! `qlship_rows_unrouted_total`, which the journal keeps.

use super::meter::ProcIo;
use crate::status::{Snapshot, TargetStatus};
use std::fmt::Write;

/// Process-wide figures read at rendering time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub io: Option<ProcIo>,
    pub fsyncs: u64,
}

/// A per-target metric: name, type, help and its value (None: no sample).
type PerTarget = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TargetStatus) -> Option<i64>,
);

pub fn render(s: &Snapshot, p: &Process) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    family(
        o,
        "qlship_info",
        "gauge",
        "Always 1; the version in a label.",
    );
    sample(o, "qlship_info", &[("version", &s.version)], 1);
    family(
        o,
        "qlship_start_time_seconds",
        "gauge",
        "When this qlship process started (Unix time).",
    );
    sample(o, "qlship_start_time_seconds", &[], s.started);
    family(
        o,
        "qlship_status_time_seconds",
        "gauge",
        "When this file was written (Unix time).",
    );
    sample(o, "qlship_status_time_seconds", &[], s.written);
    family(
        o,
        "qlship_rows_read_total",
        "counter",
        "queue_log rows read since qlship started.",
    );
    sample(o, "qlship_rows_read_total", &[], s.rows_read);
    family(
        o,
        "qlship_lines_skipped_total",
        "counter",
        "queue_log lines that were not rows (skipped and logged), kept in the journal.",
    );
    sample(o, "qlship_lines_skipped_total", &[], s.skipped_lines);
    family(o, "qlship_rows_unrouted_total", "counter", "Rows no enabled target wanted (matched no rule or a disabled target), kept in the journal.");
    sample(o, "qlship_rows_unrouted_total", &[], s.unrouted_rows);
    family(
        o,
        "qlship_spool_rows",
        "gauge",
        "Rows read and journaled but not yet acknowledged by every target.",
    );
    sample(o, "qlship_spool_rows", &[], s.spool_rows);
    family(
        o,
        "qlship_spool_bytes",
        "gauge",
        "Bytes of those rows in the journal's spool.",
    );
    sample(o, "qlship_spool_bytes", &[], s.spool_bytes);
    family(
        o,
        "qlship_spool_max_bytes",
        "gauge",
        "The spool cap (--spool-max): reading pauses there.",
    );
    sample(o, "qlship_spool_max_bytes", &[], s.spool_max);
    family(o, "qlship_storage_write_bytes_total", "counter", "Bytes qlship caused to be written to storage since it started (kernel I/O accounting, /proc/self/io write_bytes; tmpfs not included): the flash-wear figure. Absent without task I/O accounting.");
    if let Some(io) = p.io {
        sample(o, "qlship_storage_write_bytes_total", &[], io.write_bytes);
    }
    family(o, "qlship_write_call_bytes_total", "counter", "Bytes qlship passed to write calls since it started, any file system (/proc/self/io wchar).");
    if let Some(io) = p.io {
        sample(o, "qlship_write_call_bytes_total", &[], io.wchar);
    }
    family(o, "qlship_fsyncs_total", "counter", "fsync calls by qlship's own code since it started: the journal's log at each durability point, directories after renames (not sled's internal syncs).");
    sample(o, "qlship_fsyncs_total", &[], p.fsyncs);

    let per_target: &[PerTarget] = &[
        ("qlship_up", "gauge", "1 while the target accepts requests, 0 while it fails or before its first answer.", |t| Some(i64::from(t.failing_since.is_none() && t.last_success.is_some()))),
        ("qlship_stalled", "gauge", "1 while rows wait, the target answers, and none has been acknowledged for --stall-after.", |t| Some(i64::from(t.stalled_since.is_some()))),
        ("qlship_rows_acknowledged_total", "counter", "Rows the target acknowledged, kept in the journal.", |t| Some(t.acked_total as i64)),
        ("qlship_backlog_rows", "gauge", "Rows read but not yet acknowledged by the target.", |t| Some(t.backlog_rows as i64)),
        ("qlship_lag_seconds", "gauge", "queue_log time between the oldest row the target has not acknowledged and the newest row read.", |t| Some(t.backlog_secs)),
        ("qlship_last_success_timestamp_seconds", "gauge", "When the target last accepted a request (Unix time); absent if never since start.", |t| t.last_success),
        ("qlship_watermark_timestamp_seconds", "gauge", "The partition's high-water mark as the server last reported it (queue_log time).", |t| t.watermark),
        ("qlship_last_heartbeat_timestamp_seconds", "gauge", "When the last checkHb was accepted (Unix time).", |t| t.last_heartbeat),
        ("qlship_resyncs_total", "counter", "Resyncs of batches whose fate was unknown, since start.", |t| Some(t.resyncs as i64)),
        ("qlship_resync_check_rows_total", "counter", "checkRow requests those resyncs cost, since start.", |t| Some(t.requests.iter().filter(|r| r.command == "checkRow").map(|r| r.count as i64).sum())),
    ];
    for (name, kind, help, value) in per_target {
        family(o, name, kind, help);
        for t in &s.targets {
            if let Some(v) = value(t) {
                sample(o, name, &target_labels(t), v);
            }
        }
    }
    family(
        o,
        "qlship_requests_total",
        "counter",
        "Requests to the target since start, by command and outcome.",
    );
    for t in &s.targets {
        for r in &t.requests {
            let mut labels = target_labels(t);
            labels.push(("command", &r.command));
            labels.push(("outcome", &r.outcome));
            sample(o, "qlship_requests_total", &labels, r.count);
        }
    }
    family(o, "qlship_feedback_actions_total", "counter", "Feedback action containers since start, by result: ok, failed (Asterisk or AMI said no), refused (by qlship's policy), interrupted (running when qlship stopped; never rerun).");
    for t in &s.targets {
        for (result, n) in [
            ("ok", t.feedback_ok),
            ("failed", t.feedback_failed),
            ("refused", t.feedback_refused),
            ("interrupted", t.feedback_interrupted),
        ] {
            let mut labels = target_labels(t);
            labels.push(("result", result));
            sample(o, "qlship_feedback_actions_total", &labels, n);
        }
    }
    out
}

fn target_labels(t: &TargetStatus) -> Vec<(&'static str, &str)> {
    let name = if t.name.is_empty() { &t.url } else { &t.name };
    vec![("target", name), ("token", &t.token)]
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn sample(o: &mut String, name: &str, labels: &[(&str, &str)], value: impl Into<i128>) {
    o.push_str(name);
    if !labels.is_empty() {
        o.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{k}=\"{}\"", escape_label(v));
        }
        o.push('}');
    }
    let _ = writeln!(o, " {}", value.into());
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut o = String::new();
        sample(&mut o, "m", &[("target", "a\"b\\c\nd")], 3u64);
        assert_eq!(o, "m{target=\"a\\\"b\\\\c\\nd\"} 3\n");
    }
}
