//! Following queue_log through rotation, truncation and restarts: the shell that lists
//! the directory, reads files and carries out what `machine::read` and
//! `machine::generations` decide.
//!
//! The file being read is identified by (device, inode) plus a fingerprint: a hash of the
//! up to 256 bytes just before the read offset. That tells apart, while running and
//! across restarts, an appended file (fingerprint holds), a rename rotation (the path
//! names another inode), copytruncate and in-place rewrites (fingerprint or size breaks),
//! and inode reuse after delete-and-recreate (fingerprint breaks). Generations are known
//! by their first line, which survives gzip, copies and renames.
//!
//! A rotated file is left as soon as it is read to a line's end, and the newer
//! generations read; one that grows again (Asterisk still writing to a renamed file
//! because logrotate never ran `logger reload`) is read on from where it was left, with
//! a warning. Each step proposes rows and a new position; the caller journals them and
//! only then [`Tail::commit`]s, so a failed journal write re-reads rather than loses.

pub use crate::fanout::Origin;
use crate::journal::{FilePos, Finished, Region};
use crate::lines::{self, Piece};
use crate::machine::generations::Known;
use crate::machine::read::{self as decide, AtEnd, Kind};
use crate::parse;
use crate::row::Row;
use disk::Disk;
pub use disk::{id_of, mtime_ns, siblings, size_of};
pub use files::{Entry, Files, Handle};
pub use next::{head_on_disk, history, history_on_disk};
use source::{Source, FP_MAX};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod disk;
mod files;
mod next;
mod recover;
mod source;

/// Parsed rows held at once by one step (about 300 bytes each in memory).
const MAX_ROWS_PER_STEP: usize = 256;

/// A line that is not a row, reported once with where it starts.
#[derive(Debug)]
pub struct BadLine {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// Rows read by one step, not yet committed.
#[derive(Debug)]
pub struct Read {
    /// Rows in file order, each with where it comes from.
    pub rows: Vec<(Row, Origin)>,
    pub bad_lines: Vec<BadLine>,
    pub pos: FilePos,
    /// The bytes just before `pos.offset` (at most FP_MAX): the new fingerprint.
    fp: Vec<u8>,
}

#[derive(Debug)]
pub enum Step {
    Read(Read),
    /// Reading moved to another file (or back to the start of this one), or left a
    /// rotated file with no QUEUE_LOG to go on with (None): journal `pos` and the files
    /// [`Tail::take_finished`] returns.
    Switched(Option<FilePos>),
    /// Nothing new.
    Idle,
    /// QUEUE_LOG does not exist (yet).
    Missing,
}

/// Something for the log: rotations seen, recovery decisions, misconfigurations.
#[derive(Debug, PartialEq, Eq)]
pub struct Note {
    pub warn: bool,
    pub text: String,
}

pub struct Tail<F: Files = Disk> {
    files: F,
    path: PathBuf,
    grace: Duration,
    cur: Option<Source<F::Handle>>,
    chunk: Vec<u8>,
    region: Option<Region>,
    notes: Vec<Note>,
    /// Generations read and left (journaled before, or this run).
    record: Vec<Finished>,
    /// Left since the last call to [`Tail::take_finished`]: to journal.
    finished: Vec<Finished>,
    /// When each generation was left in this run (by head, ms): growth soon after is
    /// the ordinary gap before `logger reload`, later it is a misconfiguration.
    left_at: Vec<(u64, u64)>,
    warned: Vec<u64>,
    known: Known,
    /// Where reading had got when track of the file was lost (its rows are in doubt).
    lost_at: u64,
    /// The latest replay pass: counted up at every rewind, journaled with the position.
    replay_pass: u64,
    /// Records checked against their files: (file, its length, record's length and
    /// fingerprint) and whether it held.
    checked: Vec<((crate::journal::FileId, u64, u64, u64), bool)>,
    /// A journaled position at a file's start with rows in doubt: their bound, for when
    /// that file is opened.
    resume_replay: Option<(crate::journal::FileId, u64)>,
}

impl Tail {
    /// Resumes from the journaled position, finding the file it belongs to even when it
    /// was rotated, compressed, truncated or replaced while qlship was stopped.
    pub fn resume(
        path: &Path,
        saved: Option<FilePos>,
        finished_before: &[Finished],
        grace: Duration,
        chunk_size: usize,
        region: Option<Region>,
    ) -> io::Result<Tail> {
        let files = Disk::default();
        Tail::resume_in(
            files,
            path,
            saved,
            finished_before,
            grace,
            chunk_size,
            region,
        )
    }
}

impl<F: Files> Tail<F> {
    /// [`Tail::resume`] over any [`Files`] (the simulator's virtual directory).
    pub fn resume_in(
        files: F,
        path: &Path,
        saved: Option<FilePos>,
        finished_before: &[Finished],
        grace: Duration,
        chunk_size: usize,
        region: Option<Region>,
    ) -> io::Result<Tail<F>> {
        // A journal from before heads were kept (the position has none) recorded its
        // generations by another hash: none is found among these, and generations it
        // cannot place are history to it, as they were to the version that wrote it.
        let known = match saved {
            Some(p) if p.head == 0 => Known::Nothing,
            Some(_) => Known::Finished,
            None if finished_before.is_empty() => Known::Nothing,
            None => Known::Finished,
        };
        let mut tail = Tail {
            files,
            path: path.to_owned(),
            grace,
            cur: None,
            chunk: vec![0; chunk_size.max(lines::MAX_LINE + 1)],
            region,
            notes: Vec::new(),
            record: finished_before.to_vec(),
            finished: Vec::new(),
            left_at: Vec::new(),
            warned: Vec::new(),
            known,
            lost_at: 0,
            replay_pass: saved.map_or(0, |p| p.replay_pass),
            checked: Vec::new(),
            resume_replay: None,
        };
        if let Some(p) = saved {
            tail.recover(&p)?;
        }
        Ok(tail)
    }

    fn note(&mut self, text: String) {
        self.notes.push(Note { warn: false, text });
    }

    /// Rotated files left since the last call, to journal with the next position.
    pub fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    pub fn pos(&self) -> Option<FilePos> {
        let pos = self.cur.as_ref().map(Source::pos);
        pos.map(|p| FilePos {
            replay_pass: self.replay_pass,
            ..p
        })
    }

    /// Another descriptor of the file being read (for [`Journal::follow_source`]).
    ///
    /// [`Journal::follow_source`]: crate::journal::Journal::follow_source
    pub fn source_file(&self) -> Option<File> {
        self.cur.as_ref().and_then(|s| s.file.sync_handle())
    }

    /// The file being read, for status and logs.
    pub fn current_file(&self) -> Option<&Path> {
        self.cur.as_ref().map(|s| s.name.as_path())
    }

    /// True while reading a file that QUEUE_LOG no longer names (rotated, copied or
    /// deleted): it may vanish, so its rows should be spooled without delay.
    pub fn reading_rotated(&mut self) -> bool {
        let Some(cur) = &self.cur else {
            return false;
        };
        let id = cur.id;
        cur.kind != Kind::Live || self.files.id_at(&self.path).ok().flatten() != Some(id)
    }

    /// True when everything written to QUEUE_LOG so far has been read (for `--drain`).
    pub fn caught_up(&self) -> bool {
        self.cur.as_ref().is_none_or(|c| c.kind == Kind::Live)
    }

    /// One unit of work: read a chunk, switch files, or report that nothing is new.
    pub fn step(&mut self) -> io::Result<Step> {
        let Some(cur) = self.cur.as_mut() else {
            return self.take_next(false);
        };
        cur.refresh_head()?;
        if cur.offset > 0 && !cur.gz && !cur.holds(&cur.pos())? {
            return self.on_truncation();
        }
        if cur.kind == Kind::Live && cur.offset == 0 && self.rotated_unread()? {
            // Nothing read from it yet, so no fingerprint shows a copytruncate: newer
            // generations that appeared meanwhile hold its earlier rows and go first.
            self.cur = None;
            return self.take_next(false);
        }
        let Some(cur) = self.cur.as_mut() else {
            unreachable!("current file")
        };
        let offset = cur.offset;
        let n = match cur.file.read_at(&mut self.chunk, offset) {
            Ok(n) => n,
            // A damaged compressed generation: reading it again would fail the same way
            // for ever and hold every newer generation back.
            Err(e) if cur.gz && e.kind() != io::ErrorKind::Interrupted => {
                let text = format!(
                    "{} is damaged ({e}): leaving it after {offset} bytes; rows beyond are not read (decompress what is left of it by hand)",
                    cur.name.display()
                );
                self.notes.push(Note { warn: true, text });
                self.leave_current()?;
                // Recorded as read to its end: never taken up again.
                for list in [&mut self.record, &mut self.finished] {
                    if let Some(f) = list.last_mut() {
                        f.len = u64::MAX;
                    }
                }
                return self.take_next(false);
            }
            Err(e) => return Err(e),
        };
        let split = lines::split(
            &self.chunk[..n],
            offset,
            cur.skipping,
            false,
            MAX_ROWS_PER_STEP,
        );
        if split.consumed > 0 || !split.pieces.is_empty() {
            let region = self.region.as_ref();
            let read = build_read(cur, region, &self.chunk[..n], split, self.replay_pass);
            return Ok(Step::Read(read));
        }
        // At the end of what it holds now.
        if cur.kind == Kind::Live {
            let (id, now) = (cur.id, self.files.now_ms());
            match self.files.id_at(&self.path) {
                Ok(Some(at_path)) if at_path != id => {
                    let Some(cur) = self.cur.as_mut() else {
                        unreachable!("current file")
                    };
                    cur.kind = Kind::Renamed;
                    cur.quiet_since = now;
                    let text = format!(
                        "rotation: {} is a new file; finishing the old one ({}) first",
                        self.path.display(),
                        cur.name.display()
                    );
                    self.notes.push(Note { warn: false, text });
                }
                Ok(Some(_)) => return self.take_grown(),
                // Renamed away and not recreated yet: keep reading the file we hold.
                Ok(None) => return Ok(Step::Idle),
                Err(e) => return Err(e),
            }
        }
        let Some(cur) = self.cur.as_mut() else {
            unreachable!("current file")
        };
        let partial = n > split.consumed;
        let quiet = self.files.now_ms().saturating_sub(cur.quiet_since);
        match decide::at_end(cur.kind, partial, quiet, self.grace.as_millis() as u64) {
            AtEnd::Wait => Ok(Step::Idle),
            AtEnd::Finish { partial: true } if partial => {
                let split = lines::split(
                    &self.chunk[..n],
                    offset,
                    cur.skipping,
                    true,
                    MAX_ROWS_PER_STEP,
                );
                let region = self.region.as_ref();
                let read = build_read(cur, region, &self.chunk[..n], split, self.replay_pass);
                Ok(Step::Read(read))
            }
            AtEnd::Finish { .. } => {
                self.leave_current()?;
                self.take_next(false)
            }
        }
    }

    /// Accepts a [`Read`] once its rows are journaled.
    pub fn commit(&mut self, read: Read) {
        let Some(cur) = self.cur.as_mut() else { return };
        if read.pos.offset > cur.offset {
            cur.quiet_since = self.files.now_ms();
        }
        cur.fp = read.fp;
        cur.offset = read.pos.offset;
        cur.skipping = read.pos.skipping;
        let replay_pass = read.pos.replay_pass;
        debug_assert_eq!(
            FilePos {
                replay_pass,
                ..cur.pos()
            },
            read.pos
        );
    }
}

fn build_read<H>(
    cur: &Source<H>,
    region: Option<&Region>,
    chunk: &[u8],
    split: lines::Split<'_>,
    replay_pass: u64,
) -> Read {
    let mut rows = Vec::with_capacity(split.pieces.len());
    let mut bad_lines = Vec::new();
    for piece in split.pieces {
        match piece {
            Piece::Overlong { at } => bad_lines.push(BadLine {
                file: cur.name.clone(),
                offset: at,
                reason: format!("line longer than {} bytes", lines::MAX_LINE),
            }),
            Piece::Line { at, bytes } => match parse::parse_line(bytes) {
                Err(e) => bad_lines.push(BadLine {
                    file: cur.name.clone(),
                    offset: at,
                    reason: e.to_string(),
                }),
                Ok(row) => {
                    let origin = Origin {
                        in_region: region.is_some_and(|r| r.id == cur.id && at < r.end),
                        replay: if at < cur.replay_until {
                            replay_pass
                        } else {
                            0
                        },
                    };
                    rows.push((row, origin));
                }
            },
        }
    }
    let consumed_bytes = &chunk[..split.consumed];
    let mut fp: Vec<u8> = if consumed_bytes.len() >= FP_MAX {
        consumed_bytes[consumed_bytes.len() - FP_MAX..].to_vec()
    } else {
        let mut v = cur.fp.clone();
        v.extend_from_slice(consumed_bytes);
        v
    };
    let excess = fp.len().saturating_sub(FP_MAX);
    fp.drain(..excess);
    Read {
        rows,
        bad_lines,
        pos: FilePos {
            id: cur.id,
            offset: cur.offset + split.consumed as u64,
            fp_hash: fnv(&fp),
            fp_len: fp.len() as u32,
            skipping: split.skipping,
            since: cur.since,
            live: cur.live,
            replay_until: cur.replay_until,
            replay_pass,
            head: cur.head,
        },
        fp,
    }
}

pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod generation_tests;

#[cfg(test)]
mod long_run_tests;
