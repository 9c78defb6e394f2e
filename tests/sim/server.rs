//! A virtual QueueMetrics: stores rows, answers checkHWM and checkRow, and fails the
//! way real ones do behind real proxies: KO, 500, a gateway's 502/504 for a request the
//! application server stores anyway (at once or seconds later), connections dropped
//! before or after storing, refused connections, answers slower than the timeout.

use crate::rng::Rng;
use crate::world::trace;
use qlship::machine::upload::{Action, Failure, Fate, Input};
use qlship::row::Row;
use std::collections::HashMap;

/// Per-request fault probabilities, in thousandths (drawn per seed: swarm testing).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub ko: u32,
    pub error_500: u32,
    pub gateway: u32,
    pub drop_before: u32,
    pub drop_after: u32,
    pub refused: u32,
    pub slow: u32,
    /// Latest a gateway-failed or slow request is stored after it arrived (ms); must
    /// stay under the uploader's settle window.
    pub late_max: u64,
}

/// What a request did to the server and what the client hears.
pub struct Outcome<T> {
    pub answer: Result<T, Failure>,
    /// When the answer reaches the client, from now.
    pub after: u64,
}

pub struct Server {
    /// Every row stored, in the order stored, with the row's source line.
    pub stored: Vec<(Row, usize)>,
    counts: HashMap<u64, u64>,
    /// Batches a gateway or a slow request left to store later: (at, rows).
    late: Vec<(u64, Vec<(Row, usize)>)>,
    pub faults: Faults,
    /// A copy beyond what the source holds, found when storing: (identity, count).
    pub violation: Option<String>,
    pub source_counts: HashMap<u64, u64>,
}

fn failure(fate: Fate, text: &str) -> Failure {
    Failure {
        fate,
        text: text.into(),
    }
}

enum Fault {
    None,
    Ko,
    Error500,
    Gateway,
    DropBefore,
    DropAfter,
    Refused,
    Slow,
}

impl Server {
    pub fn new(faults: Faults) -> Self {
        Server {
            stored: Vec::new(),
            counts: HashMap::new(),
            late: Vec::new(),
            faults,
            violation: None,
            source_counts: HashMap::new(),
        }
    }

    fn draw(&self, rng: &mut Rng) -> Fault {
        let f = &self.faults;
        let mut x = rng.below(1000) as u32;
        for (p, fault) in [
            (f.ko, Fault::Ko),
            (f.error_500, Fault::Error500),
            (f.gateway, Fault::Gateway),
            (f.drop_before, Fault::DropBefore),
            (f.drop_after, Fault::DropAfter),
            (f.refused, Fault::Refused),
            (f.slow, Fault::Slow),
        ] {
            if x < p {
                return fault;
            }
            x -= p;
        }
        Fault::None
    }

    fn store(&mut self, rows: Vec<(Row, usize)>) {
        for (row, line) in rows {
            let id = row.identity();
            let n = self.counts.entry(id).or_default();
            *n += 1;
            if *n > self.source_counts.get(&id).copied().unwrap_or(0) && self.violation.is_none() {
                self.violation = Some(format!(
                    "stored a copy the source lacks: line {line} ({row:?}) is now held {n} times"
                ));
            }
            self.stored.push((row, line));
        }
    }

    /// Stores what gateways and slow requests left for later, up to `now`.
    pub fn tick(&mut self, now: u64) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.late = later;
        for (_, rows) in due {
            self.store(rows);
        }
    }

    pub fn next_late(&self) -> Option<u64> {
        self.late.iter().map(|(at, _)| *at).min()
    }

    pub fn insert_all(
        &mut self,
        rng: &mut Rng,
        now: u64,
        rows: Vec<(Row, usize)>,
        timeout: u64,
    ) -> Outcome<()> {
        let lat = 1 + rng.below(40);
        let (answer, after) = match self.draw(rng) {
            Fault::None => {
                self.store(rows);
                (Ok(()), lat)
            }
            Fault::Ko => (Err(failure(Fate::Refused, "KO: database busy")), lat),
            Fault::Error500 => (Err(failure(Fate::Refused, "HTTP 500")), lat),
            Fault::Gateway | Fault::Slow => {
                let late = rng.below(self.faults.late_max + 1);
                match rng.below(3) {
                    0 => self.store(rows),
                    1 => self.late.push((now + late, rows)),
                    _ => {}
                }
                (
                    Err(failure(Fate::Unknown, "HTTP 502")),
                    lat.max(timeout / 4),
                )
            }
            Fault::DropBefore => (Err(failure(Fate::Unknown, "connection reset")), lat),
            Fault::DropAfter => {
                self.store(rows);
                (Err(failure(Fate::Unknown, "connection reset")), lat)
            }
            Fault::Refused => (Err(failure(Fate::NotSent, "connection refused")), 1),
        };
        Outcome { answer, after }
    }

    fn query<T>(&mut self, rng: &mut Rng, value: T) -> Outcome<T> {
        let lat = 1 + rng.below(20);
        let answer = match self.draw(rng) {
            Fault::None => Ok(value),
            Fault::Ko => Err(failure(Fate::Refused, "KO")),
            Fault::Error500 => Err(failure(Fate::Refused, "HTTP 500")),
            Fault::Refused => Err(failure(Fate::NotSent, "connection refused")),
            _ => Err(failure(Fate::Unknown, "connection reset")),
        };
        Outcome { answer, after: lat }
    }

    pub fn check_hwm(&mut self, rng: &mut Rng) -> Outcome<Option<i64>> {
        let hwm = self.stored.iter().map(|(r, _)| r.time).max();
        self.query(rng, hwm)
    }

    pub fn check_row(&mut self, rng: &mut Rng, row: &Row) -> Outcome<u64> {
        let n = self.counts.get(&row.identity()).copied().unwrap_or(0);
        self.query(rng, n)
    }

    /// The answer to the uploader's request `action`, and how long after `now` it
    /// arrives; `batch`: the rows an insertAll carries (the range marked in flight).
    pub fn serve<E>(
        &mut self,
        rng: &mut Rng,
        now: u64,
        action: Action<E>,
        batch: Vec<(Row, usize)>,
        timeout: u64,
    ) -> (u64, Input<E>) {
        match action {
            Action::CheckHwm => {
                let o = self.check_hwm(rng);
                (o.after, Input::Watermark(o.answer))
            }
            Action::CheckRow(row) => {
                let o = self.check_row(rng, &row);
                trace(now, &format!("  checkRow answer {:?}", o.answer));
                (o.after, Input::Count(o.answer))
            }
            Action::Send { rows, .. } => {
                assert_eq!(batch.len(), rows, "the body holds the marked range");
                let o = self.insert_all(rng, now, batch, timeout);
                (o.after, Input::Sent(o.answer))
            }
            _ => unreachable!("not a request"),
        }
    }

    /// A previous loader stored these before our journal existed.
    pub fn preload(&mut self, rows: Vec<(Row, usize)>) {
        self.store(rows);
    }
}
