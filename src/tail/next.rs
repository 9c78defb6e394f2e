//! Which file the reader takes next: leaving the one it was on (recorded with how far it
//! was read), checking the record against the files, and opening the next generation
//! (or QUEUE_LOG), in doubt where nothing says whether its rows were shipped.

use super::disk::{read_some, Disk};
use super::source::{Source, FP_MAX};
use super::{fnv, Entry, Files, Handle, Note, Step, Tail};
use crate::journal::Finished;
use crate::machine::generations::{self, Known, Rank, ToRead};
use crate::machine::read::{self as decide, Kind};
use crate::resync;
use std::fs::File;
use std::io;
use std::path::Path;

impl<F: Files> Tail<F> {
    /// Records the file being read as read up to where it is, and lets it go.
    pub(super) fn leave_current(&mut self) -> io::Result<()> {
        let Some(mut cur) = self.cur.take() else {
            return Ok(());
        };
        cur.refresh_head()?;
        if cur.kind != Kind::Live {
            self.note(format!("finished rotated file {}", cur.name.display()));
        }
        self.record_read(Finished {
            id: cur.id,
            head: cur.head,
            // A compressed file never grows, and its trailer's length is only that of
            // its last member, modulo 4 GiB: recorded as read to its end.
            len: if cur.gz { u64::MAX } else { cur.offset },
            fp: fnv(&cur.fp),
        });
        Ok(())
    }

    /// Records content (by its first line) as read up to `left.len`.
    pub(super) fn record_read(&mut self, left: Finished) {
        self.left_at.retain(|(h, _)| *h != left.head);
        self.left_at.push((left.head, self.files.now_ms()));
        for list in [&mut self.record, &mut self.finished] {
            list.retain(|f| (f.head, f.id) != (left.head, left.id));
            list.push(left);
        }
        let excess = self
            .record
            .len()
            .saturating_sub(crate::journal::FINISHED_CAP);
        self.record.drain(..excess);
        // What is known of generations no longer recorded goes with them: a PBX rotates
        // daily for years.
        let recorded = |head: &u64| self.record.iter().any(|f| f.head == *head);
        self.left_at.retain(|(head, _)| recorded(head));
        self.warned.retain(|head| recorded(head));
    }

    /// What is to be read, oldest first: [`generations::to_read`], with each record
    /// checked against its file: does it still hold, just before where reading left it,
    /// the bytes read there? A file shorter than that lost its tail to a power cut.
    pub(super) fn plan(&mut self, entries: &[Entry], known: Known) -> io::Result<Vec<ToRead>> {
        let gens: Vec<_> = entries.iter().map(|e| e.gen.clone()).collect();
        // (file, record's length and fingerprint) that do not hold.
        let mut broken = Vec::new();
        let mut looked_up = Vec::new();
        for e in entries.iter().filter(|e| e.gen.len > 0) {
            let records: Vec<Finished> = self
                .record
                .iter()
                .filter(|f| f.head == e.gen.head && f.fp != 0 && f.len != u64::MAX)
                .copied()
                .collect();
            for f in records {
                let key = (e.gen.id, e.gen.len, f.len, f.fp);
                looked_up.push(key);
                let holds = match self.checked.iter().find(|(k, _)| *k == key) {
                    Some(&(_, holds)) => holds,
                    None => {
                        let holds = f.len <= e.gen.len && self.holds_at(e, f.len, f.fp)?;
                        // A compressed file is inflated to check it once, not at each
                        // poll; what a file held before it grew is looked at again.
                        self.checked
                            .retain(|((id, len, ..), _)| *id != e.gen.id || *len == e.gen.len);
                        self.checked.push((key, holds));
                        holds
                    }
                };
                if !holds {
                    broken.push((e.gen.id, f.len, f.fp));
                }
            }
        }
        // Only checks of what is there now are kept: files logrotate deleted, and the
        // content an inode held before it was reused, are not looked at again.
        self.checked.retain(|(key, _)| looked_up.contains(key));
        Ok(generations::to_read(&gens, &self.record, known, |g, f| {
            !broken.contains(&(g.id, f.len, f.fp))
        }))
    }

    /// Whether the listed file holds bytes hashing to `fp` just before `len`.
    fn holds_at(&mut self, e: &Entry, len: u64, fp: u64) -> io::Result<bool> {
        let Some(mut src) = self.open_entry(e, Kind::Copy)? else {
            return Ok(true);
        };
        let start = len.saturating_sub(FP_MAX as u64);
        let mut before = vec![0u8; (len - start) as usize];
        let n = src.file.read_at(&mut before, start)?;
        Ok(n == before.len() && fnv(&before) == fp)
    }

    /// Whether a rotated generation waits to be read.
    ///
    /// Not one with the first line of the file being read: that is a copy of it
    /// (copytruncate, perhaps still being written); once QUEUE_LOG is truncated the
    /// fingerprint shows it, and reading goes on in the copy where it was.
    pub(super) fn rotated_unread(&mut self) -> io::Result<bool> {
        let entries = self.files.list(&self.path)?;
        let todo = self.plan(&entries, self.known)?;
        let reading = self.cur.as_ref().map(|c| c.head);
        Ok(todo.iter().any(|t| {
            let g = &entries[t.gen].gen;
            g.rank != Rank::Live && Some(g.head) != reading
        }))
    }

    /// While QUEUE_LOG is read to its end: a rotated generation that grew since it was
    /// left (or no longer holds what was read) is read first; QUEUE_LOG is set aside
    /// where it is, and taken up after.
    pub(super) fn take_grown(&mut self) -> io::Result<Step> {
        if !self.rotated_unread()? {
            return Ok(Step::Idle);
        }
        self.leave_current()?;
        self.take_next(true)
    }

    /// Opens the next generation to read (a rotated one first, when `rotated_first`),
    /// or QUEUE_LOG.
    pub(super) fn take_next(&mut self, rotated_first: bool) -> io::Result<Step> {
        let entries = self.files.list(&self.path)?;
        let todo = self.plan(&entries, self.known)?;
        let next = if rotated_first {
            todo.iter()
                .find(|t| entries[t.gen].gen.rank != Rank::Live)
                .or(todo.first())
        } else {
            todo.first()
        };
        let Some(&next) = next else {
            return Ok(if self.finished.is_empty() {
                Step::Missing
            } else {
                Step::Switched(None)
            });
        };
        let e = &entries[next.gen];
        let src = self.open_next(e, next)?;
        let Some(src) = src else {
            // Gone between listing and opening: look again at the next step.
            return Ok(Step::Idle);
        };
        if e.gen.rank != Rank::Live {
            self.note(format!("reading rotated file {} next", e.name.display()));
        }
        self.cur = Some(src);
        Ok(Step::Switched(self.pos()))
    }

    fn open_next(&mut self, e: &Entry, next: ToRead) -> io::Result<Option<Source<F::Handle>>> {
        let live = e.gen.rank == Rank::Live;
        let kind = match (live, e.gen.gz) {
            (true, _) => Kind::Live,
            (false, true) => Kind::Copy,
            (false, false) => Kind::Renamed,
        };
        let Some(mut src) = self.open_entry(e, kind)? else {
            return Ok(None);
        };
        src.seek(next.offset)?;
        if let Some((id, until)) = self.resume_replay.take_if(|(id, _)| *id == src.id) {
            debug_assert_eq!(id, src.id);
            src.replay_until = src.replay_until.max(until);
        }
        if self.known == Known::LostTrack || next.in_doubt {
            // Nothing says whether these rows were shipped: all of them are in doubt.
            src.replay_until = if live {
                e.gen.len.max(self.lost_at)
            } else {
                e.gen.len
            };
            // A pass of its own: the rows it reads are told from any read before.
            self.replay_pass = resync::next_pass(self.replay_pass);
        }
        if live && self.known == Known::LostTrack {
            self.known = Known::Finished;
        }
        if next.grew {
            let left = self.left_at.iter().find(|(h, _)| *h == e.gen.head);
            let left_ms = left.map(|(_, at)| self.files.now_ms().saturating_sub(*at));
            let grace = self.grace.as_millis() as u64;
            let misconfigured = decide::growth_is_misconfiguration(left_ms, grace);
            if misconfigured && !self.warned.contains(&e.gen.head) {
                self.warned.push(e.gen.head);
                self.notes.push(Note {
                    warn: true,
                    text: format!(
                        "{} grew after it was rotated: Asterisk is still writing to it, so logrotate's postrotate lacks `asterisk -rx 'logger reload'` (qlship follows the file for as long as it grows)",
                        e.name.display()
                    ),
                });
            }
        }
        Ok(Some(src))
    }

    pub(super) fn open_source(
        &mut self,
        name: &Path,
        kind: Kind,
        gz: bool,
    ) -> io::Result<Source<F::Handle>> {
        let file = self.files.open(name, gz)?;
        Source::new(file, name, kind, gz, self.files.now_ms())
    }

    /// Opens a listed generation (None: it went meanwhile).
    pub(super) fn open_entry(
        &mut self,
        e: &Entry,
        kind: Kind,
    ) -> io::Result<Option<Source<F::Handle>>> {
        match self.open_source(&e.name, kind, e.gen.gz) {
            Ok(s) => Ok(Some(s)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// The rotated generations beside QUEUE_LOG now, as read to their end: a new journal
/// records them, so that later only generations newer than these are read (they are
/// history, from before qlship, or an earlier loader's).
pub fn history<F: Files>(files: &mut F, path: &Path) -> io::Result<Vec<Finished>> {
    let mut gens: Vec<_> = files
        .list(path)?
        .into_iter()
        .map(|e| e.gen)
        .filter(|g| g.rank != Rank::Live && g.len > 0)
        .collect();
    let numbering = generations::numbering(&gens);
    gens.sort_by(|a, b| generations::older_first(a, b, numbering));
    let excess = gens.len().saturating_sub(crate::journal::FINISHED_CAP);
    Ok(gens[excess..]
        .iter()
        .map(|g| Finished {
            id: g.id,
            head: g.head,
            len: u64::MAX,
            fp: 0,
        })
        .collect())
}

/// The hash of the first line of the file at `path` (of nothing, when it is empty or
/// unreadable): never 0.
pub fn head_on_disk(path: &Path) -> u64 {
    let mut first = [0u8; generations::HEAD_MAX];
    let n = File::open(path)
        .and_then(|f| read_some(&f, &mut first, 0))
        .unwrap_or(0);
    generations::head_of(&first[..n]).0
}

/// [`history`] on disk.
pub fn history_on_disk(path: &Path) -> io::Result<Vec<Finished>> {
    history(&mut Disk::default(), path)
}
