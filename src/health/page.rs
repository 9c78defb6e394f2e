//! `--run-dir/status.html`: one self-contained page (inline CSS and SVG, no script, no
//! external file) that uhttpd, nginx or a browser opening the file can show. Pure:
//! rendered from the status snapshot and the history.
//!
//! Each figure sits in an element with an id (`t0-backlog-rows`, …) so that a test, or
//! a person's scraper, can find it.

use super::graph::{self, Graph};
use super::history::{bucket_of, Series, POINTS, STEP_SECS};
use crate::status::{Snapshot, TargetStatus, DOWN_AFTER_SECS};
use std::fmt::Write;

/// What the page shows of one target beyond its status.
pub struct PageTarget<'a> {
    pub status: &'a TargetStatus,
    pub series: Option<&'a Series>,
    /// Since when it has been up (this run), if it is.
    pub up_since: Option<i64>,
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1em auto;max-width:1100px;padding:0 1em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:.2em 0;word-break:break-all}\
.meta{color:#555}.banner{background:#fde2e1;border:1px solid #c0392b;padding:.5em;font-weight:bold}\
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:1em 0}\
table{border-collapse:collapse}th{text-align:left;font-weight:normal;color:#555;padding:.1em 1em .1em 0;vertical-align:top}\
td{padding:.1em 0}.state{font-weight:bold;padding:.1em .5em;border-radius:4px;color:#fff}\
.up{background:#2e8b57}.backing-off{background:#d68910}.down{background:#c0392b}.starting{background:#7f8c8d}.stalled{background:#8e44ad}\
.err{color:#c0392b;word-break:break-word}figure{margin:.6em 0}figcaption{color:#555}\
svg{width:100%;height:auto;display:block}.grid{stroke:#ddd;stroke-width:.5}.tick{stroke:#eee;stroke-width:.5}\
.area{fill:#5dade2;fill-opacity:.35;stroke:#2471a3;stroke-width:1;vector-effect:non-scaling-stroke}\
.axis{font-size:10px;fill:#666}";

/// The page. `now` is the snapshot's time; `stopped` when qlship has just stopped.
pub fn render(s: &Snapshot, targets: &[PageTarget], now: i64, stopped: bool) -> String {
    let mut o = String::with_capacity(8192 + targets.len() * 3 * POINTS * 20);
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="refresh" content="10"><title>qlship: {}</title><style>{STYLE}</style></head><body>"#,
        esc(&s.queue_log)
    );
    let _ = write!(
        o,
        r#"<h1>qlship {}</h1><p class="meta">pid {}, running since {}; this page was written at <span id="written">{}</span> and is rewritten within seconds of a change (at least every 20 s); an older time means qlship is not running.</p>"#,
        esc(&s.version),
        s.pid,
        utc(s.started),
        utc(now)
    );
    if stopped {
        let _ = write!(
            o,
            r#"<p class="banner" id="stopped">qlship stopped at {}: these figures are its last.</p>"#,
            utc(now)
        );
    }
    let _ = write!(
        o,
        r#"<section><h2>reader</h2><table><tr><th>state</th><td id="reader">{}</td></tr><tr><th>file</th><td>{} at byte {}</td></tr><tr><th>rows read</th><td id="rows-read">{}</td></tr><tr><th>spool</th><td id="spool">{} rows, {} of {} bytes</td></tr><tr><th>skipped lines</th><td>{}</td></tr>"#,
        esc(&s.reader),
        esc(&s.reading),
        s.offset,
        thousands(s.rows_read),
        thousands(s.spool_rows),
        thousands(s.spool_bytes),
        thousands(s.spool_max),
        thousands(s.skipped_lines)
    );
    if targets.iter().any(|t| !t.status.name.is_empty()) {
        let _ = write!(
            o,
            "<tr><th>unrouted</th><td>{} rows matched no rule or a disabled target</td></tr>",
            thousands(s.unrouted_rows)
        );
    }
    o.push_str("</table></section>");
    for (i, t) in targets.iter().enumerate() {
        target(&mut o, i, t, now);
    }
    o.push_str("</body></html>\n");
    o
}

fn target(o: &mut String, i: usize, pt: &PageTarget, now: i64) {
    let t = pt.status;
    let (class, state) = state(t, pt.up_since, now);
    let title = if t.name.is_empty() {
        format!("{} token {:?}", t.url, t.token)
    } else {
        format!("{} ({} token {:?})", t.name, t.url, t.token)
    };
    let rate = pt
        .series
        .and_then(|s| s.last_complete(now))
        .map_or("no complete point yet".to_string(), |p| {
            format!("{} rows/min", one_decimal(p.rows_per_minute()))
        });
    let _ = write!(
        o,
        r#"<section id="t{i}"><h2>{title}</h2><table><tr><th>state</th><td><span class="state {class}" id="t{i}-state">{state}</span></td></tr><tr><th>backlog</th><td><span id="t{i}-backlog-rows">{rows} rows</span>, <span id="t{i}-lag">{lag}</span> of queue_log time</td></tr><tr><th>throughput</th><td id="t{i}-rate">{rate}</td></tr><tr><th>acknowledged</th><td id="t{i}-acked">{today} today (UTC), {start} since start, {total} in total</td></tr>"#,
        title = esc(&title),
        rows = thousands(t.backlog_rows),
        lag = duration(t.backlog_secs),
        today = thousands(t.acked_today),
        start = thousands(t.acked_since_start),
        total = thousands(t.acked_total),
    );
    let _ = write!(
        o,
        r#"<tr><th>last success</th><td id="t{i}-last-success">{}</td></tr>"#,
        when(t.last_success, now)
    );
    if let Some(e) = &t.last_error {
        let _ = write!(
            o,
            r#"<tr><th>last error</th><td class="err" id="t{i}-last-error">{}: {}</td></tr>"#,
            when(t.last_error_at, now),
            esc(e)
        );
    }
    let _ = write!(
        o,
        r#"<tr><th>watermark</th><td id="t{i}-watermark">{}</td></tr><tr><th>heartbeat</th><td id="t{i}-heartbeat">{}</td></tr></table>"#,
        t.watermark
            .map_or("unknown".into(), |w| format!("{} ({w})", utc(w))),
        when(t.last_heartbeat, now)
    );
    let window: Vec<Option<super::history::Point>> =
        pt.series.map_or(vec![None; POINTS], |s| s.window(now));
    let first_bucket = bucket_of(now) - POINTS as i64 + 1;
    let pick = |f: fn(&super::history::Point) -> f64| -> Vec<Option<f64>> {
        window.iter().map(|p| p.as_ref().map(f)).collect()
    };
    let hours = (POINTS as i64 * STEP_SECS + 1800) / 3600;
    for (id, title, values, label) in [
        (
            "backlog",
            format!("backlog, rows (largest in each {STEP_SECS} s; last {hours} h, UTC)"),
            pick(|p| p.backlog_rows as f64),
            (|v| thousands(v as u64)) as fn(f64) -> String,
        ),
        (
            "lag",
            "lag, queue_log time behind the newest row read".to_string(),
            pick(|p| p.lag_secs as f64),
            (|v| duration(v as i64)) as fn(f64) -> String,
        ),
        (
            "rate",
            "throughput, rows acknowledged per minute".to_string(),
            pick(|p| p.rows_per_minute()),
            (|v| one_decimal(v)) as fn(f64) -> String,
        ),
    ] {
        o.push_str(&graph::render(&Graph {
            title: &title,
            id: &format!("t{i}-graph-{id}"),
            first_bucket,
            values: &values,
            label,
        }));
    }
    o.push_str("</section>");
}

/// The state's CSS class and words.
fn state(t: &TargetStatus, up_since: Option<i64>, now: i64) -> (&'static str, String) {
    if let Some(since) = t.stalled_since {
        return (
            "stalled",
            format!(
                "stalled: rows wait and the server answers, but none acknowledged since {}",
                utc(since)
            ),
        );
    }
    match t.failing_since {
        Some(since) if now - since >= DOWN_AFTER_SECS => {
            ("down", format!("down since {}", utc(since)))
        }
        Some(since) => ("backing-off", format!("backing off since {}", utc(since))),
        None if t.last_success.is_none() && t.last_error.is_none() => {
            ("starting", "starting".into())
        }
        None => (
            "up",
            up_since.map_or("up".into(), |u| format!("up since {}", utc(u))),
        ),
    }
}

fn when(t: Option<i64>, now: i64) -> String {
    t.map_or("never (since start)".into(), |t| {
        format!("{} ({} ago)", utc(t), duration(now - t))
    })
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (the era-based
/// method: 400-year eras of 146,097 days, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub fn duration(secs: i64) -> String {
    crate::status::duration_as(secs, [" s", " min", " h ", " d "])
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn one_decimal(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

/// Text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_764_523_154), "2025-11-30 17:19:14 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(one_decimal(72.0), "72");
        assert_eq!(one_decimal(0.6), "0.6");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(duration(90), "90 s");
        assert_eq!(duration(3 * 3600 + 5 * 60), "3 h 05 min");
    }
}
