//! Per-target history for the status page's graphs: backlog, lag and throughput over the
//! last ~28 hours, in [`POINTS`] points of [`STEP_SECS`] each (the dimensions
//! QueueMetrics' own overnight archiving uses for its graphs).
//!
//! Pure: fed with samples and the time, it keeps, per point, the largest backlog and lag
//! seen and the rows acknowledged during it. [`History::encode`] / [`History::decode`]
//! give the small file in the run dir that carries it across a restart (at most
//! [`POINT_BYTES`] bytes per point and target: 16 KB per target when full).

use std::collections::VecDeque;

pub const STEP_SECS: i64 = 100;
pub const POINTS: usize = 1000;
/// Bytes per stored point: bucket, backlog, lag, acknowledged (u32 each).
pub const POINT_BYTES: usize = 16;
const MAGIC: &[u8; 4] = b"QLH1";

/// One [`STEP_SECS`] interval of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Point {
    /// `unix time / STEP_SECS` of the interval.
    pub bucket: i64,
    /// The largest backlog (rows) seen during the interval.
    pub backlog_rows: u64,
    /// The largest backlog in queue_log seconds seen during the interval.
    pub lag_secs: u64,
    /// Rows acknowledged during the interval.
    pub acked: u64,
}

impl Point {
    /// Rows per minute over the interval.
    pub fn rows_per_minute(&self) -> f64 {
        self.acked as f64 * 60.0 / STEP_SECS as f64
    }
}

/// What one target looks like at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub key: &'a str,
    pub backlog_rows: u64,
    pub lag_secs: i64,
    /// The journal's count of rows ever acknowledged (survives restarts).
    pub acked_total: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub key: String,
    /// `acked_total` at the last sample: each sample adds its increase to its point.
    last_acked_total: Option<u64>,
    /// Oldest first, buckets strictly increasing, at most [`POINTS`].
    points: VecDeque<Point>,
}

impl Series {
    /// The points of the [`POINTS`] buckets ending with `now`'s, oldest first; a bucket
    /// nothing was recorded in (qlship was not running) is None.
    pub fn window(&self, now: i64) -> Vec<Option<Point>> {
        let last = bucket_of(now);
        let first = last - POINTS as i64 + 1;
        let mut out = vec![None; POINTS];
        for p in &self.points {
            if (first..=last).contains(&p.bucket) {
                out[(p.bucket - first) as usize] = Some(*p);
            }
        }
        out
    }

    /// The newest interval that has ended before `now`'s, if it was recorded.
    pub fn last_complete(&self, now: i64) -> Option<Point> {
        let want = bucket_of(now) - 1;
        self.points.iter().rev().find(|p| p.bucket == want).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    pub series: Vec<Series>,
}

pub fn bucket_of(t: i64) -> i64 {
    t.div_euclid(STEP_SECS)
}

impl History {
    pub fn series(&self, key: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.key == key)
    }

    /// Records one sample per target at `now`. Targets not sampled any more (removed
    /// from the rules) are forgotten. Returns true when `now` opened a new point for any
    /// target (the caller then saves the history).
    pub fn observe(&mut self, now: i64, samples: &[Sample]) -> bool {
        self.series
            .retain(|s| samples.iter().any(|sample| sample.key == s.key));
        let bucket = bucket_of(now);
        let mut opened = false;
        for sample in samples {
            let i = match self.series.iter().position(|s| s.key == sample.key) {
                Some(i) => i,
                None => {
                    self.series.push(Series {
                        key: sample.key.to_owned(),
                        ..Default::default()
                    });
                    self.series.len() - 1
                }
            };
            let series = &mut self.series[i];
            // A journal replaced since (moved aside) counts from zero again: no increase.
            let acked = series
                .last_acked_total
                .map_or(0, |before| sample.acked_total.saturating_sub(before));
            series.last_acked_total = Some(sample.acked_total);
            // The clock went back (a board that booted without its time, then NTP): the
            // points "in the future" would never be overwritten in order; drop them.
            while series.points.back().is_some_and(|p| p.bucket > bucket) {
                series.points.pop_back();
            }
            if series.points.back().is_none_or(|p| p.bucket < bucket) {
                series.points.push_back(Point {
                    bucket,
                    ..Default::default()
                });
                opened = true;
            }
            while series.points.len() > POINTS
                || series
                    .points
                    .front()
                    .is_some_and(|p| p.bucket <= bucket - POINTS as i64)
            {
                series.points.pop_front();
            }
            let point = series.points.back_mut().expect("just pushed");
            point.backlog_rows = point.backlog_rows.max(sample.backlog_rows);
            point.lag_secs = point.lag_secs.max(sample.lag_secs.max(0) as u64);
            point.acked += acked;
        }
        opened
    }

    /// The file form: magic, target count, then per target its key, the last
    /// `acked_total` and its points (u32 fields, saturated).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self
                .series
                .iter()
                .map(|s| s.key.len() + 16 + s.points.len() * POINT_BYTES)
                .sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, self.series.len() as u64);
        for s in &self.series {
            put_u32(&mut out, s.key.len() as u64);
            out.extend_from_slice(s.key.as_bytes());
            out.extend_from_slice(&s.last_acked_total.map_or(u64::MAX, |a| a).to_be_bytes());
            put_u32(&mut out, s.points.len() as u64);
            for p in &s.points {
                for v in [p.bucket.max(0) as u64, p.backlog_rows, p.lag_secs, p.acked] {
                    put_u32(&mut out, v);
                }
            }
        }
        out
    }

    /// Reads [`History::encode`]'s form; anything else (a damaged or foreign file) is
    /// None, and the history starts empty.
    pub fn decode(bytes: &[u8]) -> Option<History> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return None;
        }
        let n = r.u32()?;
        let mut series = Vec::new();
        for _ in 0..n {
            let len = r.u32()? as usize;
            let key = String::from_utf8(r.take(len)?.to_vec()).ok()?;
            let acked = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
            let count = r.u32()? as usize;
            if count > POINTS {
                return None;
            }
            let mut points = VecDeque::with_capacity(count);
            for _ in 0..count {
                let p = Point {
                    bucket: i64::from(r.u32()?),
                    backlog_rows: u64::from(r.u32()?),
                    lag_secs: u64::from(r.u32()?),
                    acked: u64::from(r.u32()?),
                };
                if points.back().is_some_and(|q: &Point| q.bucket >= p.bucket) {
                    return None;
                }
                points.push_back(p);
            }
            series.push(Series {
                key,
                last_acked_total: (acked != u64::MAX).then_some(acked),
                points,
            });
        }
        r.0.is_empty().then_some(History { series })
    }
}

fn put_u32(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&(v.min(u64::from(u32::MAX)) as u32).to_be_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_500_000; // a multiple of STEP_SECS

    fn sample(key: &str, backlog: u64, lag: i64, acked: u64) -> Sample<'_> {
        Sample {
            key,
            backlog_rows: backlog,
            lag_secs: lag,
            acked_total: acked,
        }
    }

    #[test]
    fn a_point_keeps_the_peaks_and_the_rows_acknowledged_during_it() {
        let mut h = History::default();
        assert!(h.observe(T, &[sample("a", 5, 2, 1000)]));
        assert!(!h.observe(T + 5, &[sample("a", 40, 9, 1010)]));
        assert!(!h.observe(T + 99, &[sample("a", 3, 1, 1100)]));
        assert!(h.observe(T + 100, &[sample("a", 0, 0, 1130)]));
        let s = h.series("a").unwrap();
        let w = s.window(T + 100);
        assert_eq!(w.len(), POINTS);
        assert_eq!(
            w[POINTS - 2],
            Some(Point {
                bucket: T / STEP_SECS,
                backlog_rows: 40,
                lag_secs: 9,
                // The first sample only sets the base: 1000 rows were acknowledged before.
                acked: 100,
            })
        );
        assert_eq!(w[POINTS - 1].unwrap().acked, 30);
        assert_eq!(s.last_complete(T + 100).unwrap().rows_per_minute(), 60.0);
        assert!(w[..POINTS - 2].iter().all(Option::is_none));
    }

    #[test]
    fn keeps_the_last_thousand_buckets_with_gaps_where_nothing_ran() {
        let mut h = History::default();
        for i in 0..1500 {
            if (700..710).contains(&i) {
                continue; // qlship was stopped
            }
            h.observe(T + i * STEP_SECS, &[sample("a", i as u64, 0, 0)]);
        }
        let now = T + 1499 * STEP_SECS;
        let s = h.series("a").unwrap();
        // Buckets 500..=1499 less the ten missed.
        assert_eq!(s.points.len(), POINTS - 10);
        let w = s.window(now);
        assert_eq!(w[0].unwrap().backlog_rows, 500);
        assert_eq!(w[POINTS - 1].unwrap().backlog_rows, 1499);
        let missing: Vec<usize> = (0..POINTS).filter(|&i| w[i].is_none()).collect();
        assert_eq!(missing, (200..210).collect::<Vec<_>>());
        // Ten buckets later with nothing recorded: ten more gaps at the end.
        let w = s.window(now + 10 * STEP_SECS);
        assert_eq!(w.iter().filter(|p| p.is_none()).count(), 20);
        assert_eq!(w[0].unwrap().backlog_rows, 510);
        assert!(w[POINTS - 10..].iter().all(Option::is_none));
    }

    #[test]
    fn targets_removed_are_forgotten_and_new_ones_start_empty() {
        let mut h = History::default();
        h.observe(T, &[sample("a", 1, 0, 0), sample("b", 2, 0, 0)]);
        h.observe(T + 100, &[sample("b", 3, 0, 0), sample("c", 4, 0, 7)]);
        let keys: Vec<&str> = h.series.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
        assert_eq!(h.series("c").unwrap().points.len(), 1);
        assert_eq!(h.series("c").unwrap().points[0].acked, 0);
    }

    #[test]
    fn a_clock_that_goes_back_drops_the_future_points() {
        let mut h = History::default();
        h.observe(T + 500, &[sample("a", 9, 0, 0)]);
        h.observe(T, &[sample("a", 1, 0, 0)]);
        let s = h.series("a").unwrap();
        assert_eq!(s.points.len(), 1);
        assert_eq!(s.points[0].bucket, T / STEP_SECS);
        assert_eq!(s.points[0].backlog_rows, 1);
    }

    #[test]
    fn a_replaced_journal_adds_no_negative_throughput() {
        let mut h = History::default();
        h.observe(T, &[sample("a", 0, 0, 5000)]);
        h.observe(T + 10, &[sample("a", 0, 0, 20)]);
        h.observe(T + 20, &[sample("a", 0, 0, 25)]);
        assert_eq!(h.series("a").unwrap().points[0].acked, 5);
    }

    #[test]
    fn round_trips_through_its_file_and_refuses_damage() {
        let mut h = History::default();
        for i in 0..1200 {
            h.observe(
                T + i * 50,
                &[sample("a", i as u64, i, i as u64 * 3), sample("b", 0, 0, 0)],
            );
        }
        let bytes = h.encode();
        assert_eq!(
            bytes.len(),
            4 + 4 + 2 * (4 + 1 + 8 + 4) + (600 * POINT_BYTES) * 2
        );
        assert_eq!(History::decode(&bytes), Some(h.clone()));
        assert_eq!(History::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(History::decode(&longer), None);
        assert_eq!(History::decode(b"QLH2"), None);
        assert_eq!(History::decode(&[]), None);
        let empty = History::default();
        assert_eq!(History::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn a_full_history_is_sixteen_kilobytes_per_target() {
        let mut h = History::default();
        for i in 0..2000 {
            h.observe(T + i * STEP_SECS, &[sample("k", 1, 1, 1)]);
        }
        assert_eq!(h.encode().len(), 8 + 4 + 1 + 8 + 4 + 16_000);
    }
}
