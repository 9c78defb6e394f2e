//! Finding where reading goes on: after a restart, from the journaled position (the
//! file may have been rotated, compressed, copied, truncated or replaced meanwhile), and
//! while running, when the file being read no longer holds what was read.

use super::{Files, Note, Step, Tail};
use crate::journal::{FilePos, Finished};
use crate::machine::generations::{Known, Rank};
use crate::machine::read::{self as decide, Candidate, Found, Kind};
use crate::resync;
use std::io;

impl<F: Files> Tail<F> {
    pub(super) fn recover(&mut self, p: &FilePos) -> io::Result<()> {
        if p.offset == 0 {
            // Nothing was read from it (a new journal's pin, or a file just begun), so
            // no fingerprint tells where it went; the record places the generations.
            // A journal from before records were kept (no head) took every rotated
            // generation for history.
            // Rows of it already in doubt (a salvaged journal's) stay so when it is
            // opened.
            if p.replay_until > 0 {
                self.resume_replay = Some((p.id, p.replay_until));
            }
            return Ok(());
        }
        let entries = self.files.list(&self.path)?;
        let mut candidates = Vec::with_capacity(entries.len());
        for e in &entries {
            let (same_id, same_head) = (e.gen.id == p.id, p.head != 0 && e.gen.head == p.head);
            // Inflating a compressed file to the offset costs: only when its first line
            // says it is the one (or a journal without heads gives no choice).
            let worth = same_id || same_head || (p.head == 0 && e.gen.len >= p.offset);
            let holds = worth
                && self
                    .open_entry(e, Kind::Copy)?
                    .is_some_and(|mut s| s.holds(p).unwrap_or(false));
            candidates.push(Candidate {
                at_path: e.gen.rank == Rank::Live,
                same_id,
                holds,
                same_head,
            });
        }
        let path = self.path.display().to_string();
        // Generations no record places before the position's file: when it is not
        // where it was, nothing tells whether they were read.
        let unplaced = self
            .plan(&entries, Known::LostTrack)?
            .iter()
            .any(|t| entries[t.gen].gen.rank != Rank::Live);
        match decide::locate(&candidates) {
            Found::AtPath => {
                let e = &entries[candidates.iter().position(|c| c.at_path).expect("at path")];
                let mut src = self.open_source(&e.name, Kind::Live, false)?;
                src.seek_to(p)?;
                self.cur = Some(src);
            }
            Found::Moved(i) => {
                let e = &entries[i];
                let kind = if e.gen.gz || e.gen.id != p.id {
                    Kind::Copy
                } else {
                    Kind::Renamed
                };
                let mut src = self.open_source(&e.name, kind, e.gen.gz)?;
                src.seek_to(p)?;
                src.live = false;
                self.note(format!(
                    "{path} was rotated, copied or compressed while qlship was stopped; finishing {} first",
                    e.name.display()
                ));
                self.cur = Some(src);
            }
            Found::Rewritten if !unplaced => {
                let at = self.path.clone();
                let mut src = self.open_source(&at, Kind::Live, false)?;
                self.replay_pass = resync::next_pass(self.replay_pass);
                src.rewind(p.offset)?;
                src.seek_to(&FilePos {
                    offset: 0,
                    fp_len: 0,
                    ..src.pos()
                })?;
                self.note(format!(
                    "{path} was truncated or rewritten while qlship was stopped; reading it again from the start, checking with the server the rows it may have shipped"
                ));
                self.cur = Some(src);
            }
            Found::Rewritten | Found::Gone => {
                self.replay_pass = resync::next_pass(self.replay_pass);
                self.known = Known::LostTrack;
                self.lost_at = p.offset;
                self.notes.push(Note {
                    warn: true,
                    text: format!(
                        "the file qlship was reading (inode {}, offset {}) is gone or rewritten, and generations beside {path} may hold rows it never read; reading them and {path} from the start, checking with the server the rows it may have shipped",
                        p.id, p.offset
                    ),
                });
            }
        }
        Ok(())
    }

    /// The file we read no longer holds what we read: copytruncate, or rewritten in place.
    pub(super) fn on_truncation(&mut self) -> io::Result<Step> {
        let mut cur = self.cur.take().expect("current file");
        let pos = cur.pos();
        if cur.kind != Kind::Live {
            self.note(format!(
                "rotated file {} changed under us; leaving it",
                cur.name.display()
            ));
            self.cur = Some(cur);
            self.leave_current()?;
            return self.take_next(false);
        }
        // A copy holding what we read (copytruncate) goes first, from where we were.
        let entries = self.files.list(&self.path)?;
        for e in entries
            .iter()
            .filter(|e| e.gen.rank != Rank::Live && e.gen.id != pos.id)
        {
            let Some(mut copy) = self.open_entry(e, Kind::Copy)? else {
                continue;
            };
            if copy.holds(&pos)? {
                copy.seek_to(&pos)?;
                copy.live = false;
                self.note(format!(
                    "{} was truncated (copytruncate); reading the rest of {} first",
                    self.path.display(),
                    copy.name.display()
                ));
                // QUEUE_LOG, with its new first line, is read from its start afterwards.
                self.cur = Some(copy);
                return Ok(Step::Switched(self.pos()));
            }
        }
        // What it held up to there was read: a copy of it that holds less (copytruncate
        // caught between its copy and its truncation, a row written in between) is a
        // copy of rows read, and is read in doubt, not as new.
        self.record_read(Finished {
            id: pos.id,
            head: cur.head,
            len: pos.offset,
            fp: pos.fp_hash,
        });
        self.replay_pass = resync::next_pass(self.replay_pass);
        cur.rewind(pos.offset)?;
        self.note(format!(
            "{} was truncated or rewritten; reading it from the start, checking with the server the rows it may have shipped",
            self.path.display()
        ));
        self.cur = Some(cur);
        Ok(Step::Switched(self.pos()))
    }
}
