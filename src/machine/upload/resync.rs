//! The resync half of the uploader: rows whose fate is unknown are resolved with
//! checkHWM and checkRow, every answer kept until the last one is in.

use super::{Action, Awaiting, Command, Event, Failure, Millis, Spooled, Uploader};
use crate::resync::{self, AckedRing, Doubt, Judgement};
use std::collections::{HashMap, HashSet};

/// A resync in progress: the rows in doubt and every answer received so far.
pub(super) struct Resync<E> {
    pub(super) entries: Vec<E>,
    /// The live watermark, once checkHWM answered.
    pub(super) live: Option<Option<i64>>,
    /// Indexes (into `entries`) of the first row of each distinct identity to ask about.
    pub(super) to_ask: Vec<usize>,
    /// checkRow answers by identity.
    counts: HashMap<u64, u64>,
    requests: u64,
}

impl<E: Spooled> Uploader<E> {
    pub(super) fn begin_resync(&mut self, entries: Vec<E>) {
        if entries.is_empty() {
            // Every row of the in-flight range was acknowledged meanwhile.
            self.queue(Action::ClearInflight, None);
            return;
        }
        self.resync = Some(Resync {
            entries,
            live: None,
            to_ask: Vec::new(),
            counts: HashMap::new(),
            requests: 0,
        });
    }

    pub(super) fn resync_hwm(&mut self, now: Millis, answer: Result<Option<i64>, Failure>) {
        let r = self.resync.as_mut().expect("resync");
        r.requests += 1;
        match answer {
            Ok(live) => {
                r.live = Some(live);
                let takeover = self.takeover.flatten();
                let mut seen = HashSet::new();
                r.to_ask = (0..r.entries.len())
                    .filter(|&i| {
                        let e = &r.entries[i];
                        let j = resync::judge(
                            e.row().time,
                            e.before_takeover(),
                            takeover,
                            live,
                            e.replay() != 0,
                        );
                        j == Judgement::Ask && seen.insert(e.row().identity())
                    })
                    .collect();
            }
            Err(failure) => {
                self.fail(now, Command::CheckHwm, failure);
            }
        }
    }

    pub(super) fn resync_row(&mut self, now: Millis, answer: Result<u64, Failure>) {
        let r = self.resync.as_mut().expect("resync");
        r.requests += 1;
        match answer {
            Ok(count) => {
                let i = *r.to_ask.iter().find(|&&i| !r.asked(i)).expect("asked");
                r.counts.insert(r.entries[i].row().identity(), count);
                self.backoff.reset();
            }
            // The same request goes again after the backoff; every answer so far stays.
            Err(failure) => {
                self.fail(now, Command::CheckRow, failure);
            }
        }
    }

    pub(super) fn decide_resync(&mut self, ring: &AckedRing) {
        let r = self.resync.as_mut().expect("resync");
        let live = r.live.expect("watermark known");
        let takeover = self.takeover.flatten();
        let mut stored_outright = Vec::new();
        let mut asked = Vec::new();
        for e in &r.entries {
            let replayed = e.replay() != 0;
            match resync::judge(e.row().time, e.before_takeover(), takeover, live, replayed) {
                Judgement::Stored => stored_outright.push(e.seq()),
                Judgement::Send => {}
                Judgement::Ask => asked.push(Doubt {
                    seq: e.seq(),
                    identity: e.row().identity(),
                    replay: e.replay(),
                }),
            }
        }
        let (present, _) = resync::decide(&asked, &r.counts, ring);
        let present: HashSet<u64> = present.into_iter().chain(stored_outright).collect();
        let entries = std::mem::take(&mut r.entries);
        let in_doubt = entries.len();
        let (stored, to_send): (Vec<E>, Vec<E>) = entries
            .into_iter()
            .partition(|e| present.contains(&e.seq()));
        self.events.push(Event::Resynced {
            in_doubt,
            stored: stored.len(),
            to_send: to_send.len(),
            requests: r.requests,
        });
        self.queue(
            // A resync runs between batches: every batch sent under this run's window
            // is settled in a commit before this one, so the mark can go.
            Action::Settle {
                stored,
                to_send,
                found: true,
                inflight: None,
            },
            Some(Awaiting::Settled { resync: true }),
        );
    }
}

impl<E: Spooled> Resync<E> {
    pub(super) fn asked(&self, i: usize) -> bool {
        self.counts.contains_key(&self.entries[i].row().identity())
    }
}
