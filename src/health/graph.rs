//! One inline SVG graph of a history window: an area per run of recorded points (a gap
//! where qlship was not running), a y axis from 0 to a round maximum, and the time of
//! day every 6 hours (UTC). Pure text; no script, no external file.

use super::history::STEP_SECS;
use std::fmt::Write;

/// Plot area in SVG units: one unit per point across, [`PLOT_H`] high.
pub const PLOT_X: f64 = 56.0;
pub const PLOT_Y: f64 = 8.0;
pub const PLOT_H: f64 = 100.0;
const WIDTH: f64 = 1000.0 + PLOT_X + 8.0;
const HEIGHT: f64 = PLOT_Y + PLOT_H + 22.0;
/// Time labels this often (UTC hours).
const TICK_SECS: i64 = 6 * 3600;

/// A graph's values (one per point, None where nothing was recorded), with the
/// bucket of the first and how to write a value on the axis.
pub struct Graph<'a> {
    pub title: &'a str,
    /// A short id for the test and the page's anchors.
    pub id: &'a str,
    pub first_bucket: i64,
    pub values: &'a [Option<f64>],
    pub label: fn(f64) -> String,
}

/// The smallest of 1, 2, 5 × 10^k at or above `v` (at least 1).
pub fn round_max(v: f64) -> f64 {
    if v.is_nan() || v <= 1.0 {
        return 1.0;
    }
    let mut base = 10f64.powi(v.log10().floor() as i32);
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * base >= v {
                return m * base;
            }
        }
        base *= 10.0;
    }
}

/// The y coordinate of `v` on a scale from 0 to `max`.
pub fn y_of(v: f64, max: f64) -> f64 {
    PLOT_Y + PLOT_H - (v / max).clamp(0.0, 1.0) * PLOT_H
}

pub fn render(g: &Graph) -> String {
    let max = round_max(g.values.iter().flatten().fold(0.0, |a: f64, &b| a.max(b)));
    let mut o = String::with_capacity(g.values.len() * 24 + 1024);
    let _ = write!(
        o,
        r#"<figure class="graph" id="{id}"><figcaption>{title}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" data-max="{max}" xmlns="http://www.w3.org/2000/svg">"#,
        id = g.id,
        title = g.title
    );
    let base = PLOT_Y + PLOT_H;
    let right = PLOT_X + g.values.len() as f64;
    if g.values.iter().all(Option::is_none) {
        let _ = write!(
            o,
            r#"<text class="axis" x="{x}" y="{y}" text-anchor="middle">no history yet</text></svg></figure>"#,
            x = PLOT_X + g.values.len() as f64 / 2.0,
            y = PLOT_Y + PLOT_H / 2.0
        );
        return o;
    }
    // Grid: 0, half and the maximum; the half unlabelled (half a row means nothing).
    let half = y_of(max / 2.0, max);
    let _ = write!(
        o,
        r#"<line class="grid" x1="{PLOT_X}" y1="{half}" x2="{right}" y2="{half}"/>"#
    );
    for (v, y) in [(0.0, base), (max, PLOT_Y)] {
        let _ = write!(
            o,
            r#"<line class="grid" x1="{PLOT_X}" y1="{y}" x2="{right}" y2="{y}"/><text class="axis" x="{x}" y="{ty}" text-anchor="end">{label}</text>"#,
            x = PLOT_X - 4.0,
            ty = y + 3.5,
            label = (g.label)(v)
        );
    }
    for i in 0..g.values.len() {
        let t = (g.first_bucket + i as i64) * STEP_SECS;
        if t.rem_euclid(TICK_SECS) < STEP_SECS {
            let x = PLOT_X + i as f64;
            let hour = t.rem_euclid(86_400) / 3600;
            let _ = write!(
                o,
                r#"<line class="tick" x1="{x}" y1="{PLOT_Y}" x2="{x}" y2="{base}"/>"#
            );
            // Not under the "now" at the right end.
            if x < right - 40.0 {
                let _ = write!(
                    o,
                    r#"<text class="axis" x="{x}" y="{ty}" text-anchor="middle">{hour:02}:00</text>"#,
                    ty = base + 14.0
                );
            }
        }
    }
    // One area per run of recorded points.
    let mut i = 0;
    while i < g.values.len() {
        if g.values[i].is_none() {
            i += 1;
            continue;
        }
        let start = i;
        let _ = write!(o, r#"<path class="area" d="M{},{base}"#, PLOT_X + i as f64);
        while let Some(Some(v)) = g.values.get(i) {
            let _ = write!(o, "L{},{:.1}", PLOT_X + i as f64, y_of(*v, max));
            i += 1;
        }
        // A lone point still gets a visible width.
        let end = if i - start == 1 { i } else { i - 1 };
        let _ = write!(o, r#"L{},{base}Z"/>"#, PLOT_X + end as f64);
    }
    let _ = write!(
        o,
        r#"<text class="axis" x="{right}" y="{ty}" text-anchor="end">now</text></svg></figure>"#,
        ty = base + 14.0
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_history_says_so() {
        let svg = render(&Graph {
            title: "backlog",
            id: "g",
            first_bucket: 0,
            values: &[None; 10],
            label: |v| format!("{v}"),
        });
        assert!(svg.contains(">no history yet</text>"), "{svg}");
        assert!(!svg.contains("<path"));
    }

    #[test]
    fn round_maxima() {
        assert_eq!(round_max(0.0), 1.0);
        assert_eq!(round_max(1.0), 1.0);
        assert_eq!(round_max(1.2), 2.0);
        assert_eq!(round_max(3.0), 5.0);
        assert_eq!(round_max(5.0), 5.0);
        assert_eq!(round_max(7.0), 10.0);
        assert_eq!(round_max(480.0), 500.0);
        assert_eq!(round_max(501.0), 1000.0);
        assert_eq!(round_max(1999.0), 2000.0);
    }

    #[test]
    fn areas_follow_the_values_and_break_at_gaps() {
        let values = [Some(0.0), Some(250.0), Some(500.0), None, None, Some(100.0)];
        let svg = render(&Graph {
            title: "backlog",
            id: "g",
            first_bucket: 0,
            values: &values,
            label: |v| format!("{v}"),
        });
        assert!(svg.contains(r#"data-max="500""#), "{svg}");
        let paths: Vec<&str> = svg
            .split(r#"<path class="area" d=""#)
            .skip(1)
            .map(|p| p.split('"').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "M56,108L56,108.0L57,58.0L58,8.0L58,108Z",
                "M61,108L61,88.0L62,108Z"
            ]
        );
        // Bucket 0 is 00:00 UTC: a tick there (its label would sit under "now").
        assert!(svg.contains(r#"<line class="tick" x1="56""#), "{svg}");
        assert!(!svg.contains(">00:00</text>"), "{svg}");
        assert!(svg.contains(">0</text>") && svg.contains(">500</text>"));
        assert!(!svg.contains(">250</text>"));
    }
}
