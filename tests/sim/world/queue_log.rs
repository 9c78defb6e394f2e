//! The simulated queue_log and its reader: a history of every row written and the file
//! as it is now (power cuts take back what was not written back, `sed -i` deletes a
//! line), read through the real read-side decisions (`machine::read`, `fanout`).

use super::{trace, SpoolRow, World, BASE_TIME};
use crate::rng::Rng;
use qlship::fanout::{self, Lane, Origin};
use qlship::journal::Takeover;
use qlship::machine::read::resume_in;
use qlship::resync;
use qlship::row::Row;

impl World {
    /// The reader has read the queue_log as it is now.
    pub(super) fn caught_up(&self) -> bool {
        let (pos, fp) = (self.journal.now.pos, self.journal.now.fp);
        pos == self.disk.len() && (pos == 0 || Some(self.disk[pos - 1]) == fp)
    }

    pub(super) fn wall_secs(&self) -> i64 {
        BASE_TIME + (self.now as i64 + self.wall_offset).div_euclid(1000)
    }

    pub(super) fn new_row(&mut self) -> Row {
        // Two identical lines in the same second: only ever the line just written, and
        // in the same second (not across a power cut, after which time has moved on).
        let last = self.disk.last().map(|&l| &self.file[l]);
        if let Some(prev) = last.filter(|r| r.time == self.wall_secs()) {
            if self.rng.chance(self.p.repeat) {
                return prev.clone();
            }
        }
        let pick = |rng: &mut Rng, options: &[&str]| {
            options[rng.below(options.len() as u64) as usize].to_string()
        };
        // Drawn in the order the fields are written: the seeds' worlds stay as they were.
        let time = self.wall_secs();
        let call_id = format!("call-{}", self.rng.below(6));
        let queue = pick(&mut self.rng, &["sales", "support"]);
        let agent = pick(&mut self.rng, &["NONE", "Agent/101", "Agent/102"]);
        let verb = pick(&mut self.rng, &["ENTERQUEUE", "CONNECT", "COMPLETECALLER"]);
        let data1 = pick(&mut self.rng, &["", "1", "2"]);
        Row::new(
            time,
            &call_id,
            &queue,
            &agent,
            &verb,
            [&data1, "", "", "", ""],
        )
    }

    /// An earlier loader stored the head of the file before this journal existed:
    /// that head is the takeover region, judged against the watermark.
    pub(super) fn prepare_takeover(&mut self) {
        let Some(stored) = self.p.preloaded else {
            return;
        };
        let region = stored + self.rng.below(10) as usize;
        for _ in 0..region {
            let row = self.new_row();
            self.push_row(row);
            self.now += self.rng.below(700);
        }
        let head = self.file[..stored].iter().cloned().zip(0..).collect();
        self.server.preload(head);
        self.region = region;
    }

    pub(super) fn push_row(&mut self, row: Row) {
        *self.server.source_counts.entry(row.identity()).or_default() += 1;
        self.disk.push(self.file.len());
        self.file.push(row);
    }

    /// The kernel writes dirty pages back now and then; qlship's syncs do it at once.
    pub(super) fn write_back(&mut self) {
        if self.now >= self.next_writeback {
            self.durable = self.disk.len();
            self.next_writeback = self.now + self.p.writeback;
        }
    }

    /// What every journal sync does first (`Journal::follow_source`).
    pub(super) fn sync_source(&mut self) {
        self.durable = self.disk.len();
    }

    pub(super) fn write_rows(&mut self) {
        while self.file.len() < self.p.rows + self.region && self.next_write <= self.now {
            let row = self.new_row();
            self.push_row(row);
            if self.disk.len() > 1 && self.rng.chance(self.p.rewrite) {
                // sed -i: a new file without one earlier line, renamed over.
                let gone = self.rng.below(self.disk.len() as u64 - 1) as usize;
                self.disk.remove(gone);
                self.durable = self.disk.len();
            }
            // Bursts and pauses.
            self.next_write = self.now
                + if self.p.catch_up {
                    0
                } else if self.rng.chance(100) {
                    self.rng.below(5_000)
                } else {
                    self.rng.below(300)
                };
        }
    }

    /// The reader spools what the file has beyond its position, in one commit. A file
    /// that no longer holds the row before that position (the fingerprint) is read again
    /// from the start, in doubt, as `machine::read` decides.
    pub(super) fn read(&mut self) {
        let (mut pos, fp) = (self.journal.now.pos, self.journal.now.fp);
        let holds = pos <= self.disk.len() && (pos == 0 || Some(self.disk[pos - 1]) == fp);
        if !holds {
            let resume = resume_in(pos as u64, false, self.disk.len() as u64);
            trace(
                self.now,
                &format!(
                    "read again: at {pos} of {}, in doubt up to {}",
                    self.disk.len(),
                    resume.replay_until
                ),
            );
            let replay_until = self
                .journal
                .now
                .replay_until
                .max(resume.replay_until as usize);
            pos = resume.offset as usize;
            // The tail reports a switch: the daemon journals it and syncs.
            let pass = resync::next_pass(self.journal.now.replay_pass);
            self.journal.rewind(replay_until, pass);
            self.sync_source();
            self.journal.sync();
            if self.maybe_crash() {
                return;
            }
        }
        if pos >= self.disk.len() || self.journal.now.spool.len() >= 400 {
            return;
        }
        let (replay_until, pass) = (self.journal.now.replay_until, self.journal.now.replay_pass);
        let end = self.disk.len().min(pos + 1 + self.rng.below(40) as usize);
        // Which rows go to the spool and how sure the target is that each is new: the
        // real read-side decision (takeover region, watermark, replay).
        let lane = [Lane {
            index: 0,
            slot: 0,
            takeover: self
                .journal
                .now
                .takeover
                .map_or(Takeover::Pending, Takeover::Done),
            over_share: false,
        }];
        let mut rows = Vec::new();
        for i in pos..end {
            let line = self.disk[i];
            let origin = Origin {
                in_region: line < self.region,
                replay: if i < replay_until { pass } else { 0 },
            };
            let plan = fanout::plan(None, &lane, vec![(self.file[line].clone(), origin)]);
            rows.extend(plan.rows.into_iter().map(|r| {
                let kept = r.want != 0;
                kept.then_some(SpoolRow {
                    row: r.row,
                    line,
                    doubt: r.doubt & 1 != 0,
                    takeover: r.takeover & 1 != 0,
                    replay: r.replay,
                })
            }));
        }
        self.journal.append(rows, end, Some(self.disk[end - 1]));
        self.woken = true;
        self.maybe_crash();
    }
}
