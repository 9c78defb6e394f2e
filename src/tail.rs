//! Following queue_log through rotation, truncation and restarts.
//!
//! The file being read is identified by (device, inode) plus a fingerprint: a hash of the
//! up to 256 bytes just before the read offset. That tells apart, while running and
//! across restarts, an appended file (fingerprint holds), a rename rotation (the path
//! names another inode), copytruncate and in-place rewrites (fingerprint or size breaks),
//! and inode reuse after delete-and-recreate (fingerprint breaks).
//!
//! After a rename, Asterisk keeps writing to the renamed file until `logger reload`, so
//! the old file is read until it has been quiet for the grace period after the new one
//! appeared; its rows therefore go before the new file's. Each step proposes rows and a
//! new position; the caller journals them and only then [`Tail::commit`]s, so a failed
//! journal write re-reads rather than loses.

pub use crate::fanout::Origin;
use crate::journal::{FileId, FilePos, Region};
use crate::lines::{self, Piece};
use crate::parse;
use crate::row::Row;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FP_MAX: usize = 256;
/// Parsed rows held at once by one step (about 300 bytes each in memory).
const MAX_ROWS_PER_STEP: usize = 256;

struct Source {
    file: File,
    id: FileId,
    name: PathBuf,
    offset: u64,
    skipping: bool,
    /// The bytes just before `offset` (at most FP_MAX).
    fp: Vec<u8>,
    /// Set once the path names another file: this one is being finished.
    rotated_since: Option<Instant>,
    last_data: Instant,
    /// Modification time (ns) when reading began, and whether it was QUEUE_LOG then.
    since: i64,
    live: bool,
    /// Rows starting before this offset are read again: the file shrank or was
    /// rewritten under an offset qlship had reached, so they may be rows it already
    /// shipped (0: none).
    replay_until: u64,
}

impl Source {
    fn open(name: &Path, live: bool) -> io::Result<Source> {
        let file = File::open(name)?;
        let meta = file.metadata()?;
        Ok(Source {
            file,
            id: id_of(&meta),
            name: name.to_owned(),
            offset: 0,
            skipping: false,
            fp: Vec::new(),
            rotated_since: None,
            last_data: Instant::now(),
            since: mtime_ns(&meta),
            live,
            replay_until: 0,
        })
    }

    fn pos(&self) -> FilePos {
        FilePos {
            id: self.id,
            offset: self.offset,
            fp_hash: fnv(&self.fp),
            fp_len: self.fp.len() as u32,
            skipping: self.skipping,
            since: self.since,
            live: self.live,
            replay_until: self.replay_until,
            replay_pass: 0,
        }
    }

    /// Whether the file still holds, just before `pos.offset`, the bytes we read there.
    fn holds(&self, pos: &FilePos) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        if len < pos.offset {
            return Ok(false);
        }
        let mut buf = vec![0u8; pos.fp_len as usize];
        let start = pos.offset - u64::from(pos.fp_len);
        self.file.read_exact_at(&mut buf, start)?;
        Ok(fnv(&buf) == pos.fp_hash)
    }

    fn seek_to(&mut self, pos: &FilePos) -> io::Result<()> {
        let mut fp = vec![0u8; pos.fp_len as usize];
        self.file
            .read_exact_at(&mut fp, pos.offset - u64::from(pos.fp_len))?;
        self.fp = fp;
        self.offset = pos.offset;
        self.skipping = pos.skipping;
        self.since = pos.since;
        self.live = pos.live;
        self.replay_until = pos.replay_until;
        Ok(())
    }

    /// Back to the start of the file, which shrank or was rewritten under an offset
    /// qlship had reached (`reached`): every row up to that offset, or up to the file's
    /// end if it is longer now (an edit may have moved old rows further on), may have
    /// been shipped and is in doubt.
    fn rewind(&mut self, reached: u64) -> io::Result<()> {
        let meta = self.file.metadata()?;
        let resume = crate::machine::read::resume_in(reached, false, meta.len());
        self.replay_until = self.replay_until.max(resume.replay_until);
        self.offset = resume.offset;
        self.fp.clear();
        self.skipping = false;
        self.since = mtime_ns(&meta);
        Ok(())
    }

    fn quiet_for(&self, grace: Duration) -> bool {
        match self.rotated_since {
            None => false,
            Some(since) => since.max(self.last_data).elapsed() >= grace,
        }
    }
}

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
    /// Reading moved to another file (or back to the start of this one), or finished a
    /// rotated file with no QUEUE_LOG to go on with (None): journal `pos` and the files
    /// [`Tail::take_finished`] returns.
    Switched(Option<FilePos>),
    /// Nothing new.
    Idle,
    /// QUEUE_LOG does not exist (yet).
    Missing,
}

pub struct Tail {
    path: PathBuf,
    grace: Duration,
    cur: Option<Source>,
    /// Set once a rotated file has been read: before QUEUE_LOG itself, any rotated file
    /// modified since this time (nanoseconds) and not read yet comes next (several
    /// rotations while stopped, or while a rotated file was still being read).
    rotated_after: Option<i64>,
    chunk: Vec<u8>,
    region: Option<Region>,
    /// Messages for the log (rotation seen, recovery decisions).
    notes: Vec<String>,
    /// Rotated files read to the end and not yet journaled as such.
    finished: Vec<(FileId, u64)>,
    /// Rotated files read to the end (journaled earlier, or this run): never read again.
    done: Vec<(FileId, u64)>,
    /// The latest replay pass: counted up at every rewind, journaled with the position.
    replay_pass: u64,
}

impl Tail {
    /// Resumes from the journaled position, finding the file it belongs to even when it
    /// was rotated, truncated or replaced while qlship was stopped.
    pub fn resume(
        path: &Path,
        saved: Option<FilePos>,
        done_before: &[(FileId, u64)],
        grace: Duration,
        chunk_size: usize,
        region: Option<Region>,
    ) -> io::Result<Tail> {
        let mut tail = Tail {
            path: path.to_owned(),
            grace,
            cur: None,
            rotated_after: None,
            chunk: vec![0; chunk_size.max(lines::MAX_LINE + 1)],
            region,
            notes: Vec::new(),
            finished: Vec::new(),
            done: done_before.to_vec(),
            replay_pass: saved.map_or(0, |p| p.replay_pass),
        };
        if let Some(p) = saved {
            tail.recover(&p)?;
        }
        Ok(tail)
    }

    fn recover(&mut self, p: &FilePos) -> io::Result<()> {
        let at_path = match Source::open(&self.path, true) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (at_path, other_file) = match at_path {
            Some(s) if s.id == p.id => (Some(s), None),
            other => (None, other),
        };
        if let Some(mut src) = at_path {
            if src.holds(p)? {
                src.seek_to(p)?;
                self.cur = Some(src);
                return Ok(());
            }
            self.replay_pass += 1;
            src.rewind(p.offset)?;
            if let Some(mut copy) =
                self.find_sibling(|s| s.id != p.id && s.holds(p).unwrap_or(false))?
            {
                copy.seek_to(p)?;
                copy.rotated_since = Some(Instant::now());
                self.notes.push(format!(
                    "{} was truncated while qlship was stopped; reading the rest of its copy {} first",
                    self.path.display(),
                    copy.name.display()
                ));
                self.cur = Some(copy);
            } else {
                self.notes.push(format!(
                    "{} was truncated or replaced while qlship was stopped; reading it from the start",
                    self.path.display()
                ));
                self.cur = Some(src);
            }
            return Ok(());
        }
        // The file we were reading is no longer at the path: rotated (or deleted).
        let found = match self.find_sibling(|s| s.id == p.id && s.holds(p).unwrap_or(false))? {
            Some(s) => Some(s),
            None => self.find_sibling(|s| s.holds(p).unwrap_or(false))?,
        };
        let Some(mut old) = found else {
            self.notes.push(format!(
                "the file qlship was reading (inode {}, offset {}) is gone; starting {} from the beginning, checking with the server the rows it may have shipped (a rewrite such as sed -i leaves a new file with the old rows)",
                p.id,
                p.offset,
                self.path.display()
            ));
            if let Some(mut src) = other_file {
                self.replay_pass += 1;
                src.rewind(p.offset)?;
                self.cur = Some(src);
            }
            return Ok(());
        };
        old.seek_to(p)?;
        old.rotated_since = Some(Instant::now());
        self.notes.push(format!(
            "{} was rotated while qlship was stopped; finishing {} first",
            self.path.display(),
            old.name.display(),
        ));
        self.cur = Some(old);
        Ok(())
    }

    /// The oldest rotated file modified since `after` that has not been read, if any.
    fn next_rotated(&self, after: i64, exclude: Option<FileId>) -> io::Result<Option<Source>> {
        let path_id = std::fs::metadata(&self.path).ok().map(|m| id_of(&m));
        let mut best: Option<(i64, PathBuf)> = None;
        for (name, meta) in self.siblings()? {
            let (id, mtime) = (id_of(&meta), mtime_ns(&meta));
            if Some(id) == path_id || Some(id) == exclude || mtime < after {
                continue;
            }
            let Ok(file) = File::open(&name) else {
                continue;
            };
            if self.done.contains(&(id, head_hash(&file)?)) {
                continue;
            }
            if best.as_ref().is_none_or(|(m, _)| mtime < *m) {
                best = Some((mtime, name));
            }
        }
        let Some((_, name)) = best else {
            return Ok(None);
        };
        let mut s = Source::open(&name, false)?;
        s.rotated_since = Some(Instant::now());
        Ok(Some(s))
    }

    fn siblings(&self) -> io::Result<Vec<(PathBuf, Metadata)>> {
        siblings(&self.path)
    }

    fn find_sibling(&self, pred: impl Fn(&Source) -> bool) -> io::Result<Option<Source>> {
        for (name, _) in self.siblings()? {
            if let Ok(s) = Source::open(&name, false) {
                if pred(&s) {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// Rotated files finished since the last call, to journal with the next position.
    pub fn take_finished(&mut self) -> Vec<(FileId, u64)> {
        std::mem::take(&mut self.finished)
    }

    pub fn take_notes(&mut self) -> Vec<String> {
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
        self.cur.as_ref().and_then(|s| s.file.try_clone().ok())
    }

    /// The file being read, for status and logs.
    pub fn current_file(&self) -> Option<&Path> {
        self.cur.as_ref().map(|s| s.name.as_path())
    }

    /// True while reading a file that QUEUE_LOG no longer names (rotated, copied or
    /// deleted): it may vanish, so its rows should be spooled without delay.
    pub fn reading_rotated(&self) -> bool {
        let Some(cur) = &self.cur else {
            return false;
        };
        cur.rotated_since.is_some()
            || std::fs::metadata(&self.path).map_or(true, |m| id_of(&m) != cur.id)
    }

    /// True when everything written to QUEUE_LOG so far has been read (for `--drain`).
    pub fn caught_up(&self) -> bool {
        self.cur.as_ref().is_none_or(|c| c.rotated_since.is_none())
    }

    /// One unit of work: read a chunk, switch files, or report that nothing is new.
    pub fn step(&mut self) -> io::Result<Step> {
        let Some(cur) = self.cur.as_mut() else {
            if let Some(after) = self.rotated_after {
                if let Some(next) = self.next_rotated(after, None)? {
                    self.notes
                        .push(format!("reading rotated file {} next", next.name.display()));
                    self.cur = Some(next);
                    return Ok(Step::Switched(self.pos()));
                }
                self.rotated_after = None;
            }
            return match Source::open(&self.path, true) {
                Ok(src) => {
                    self.cur = Some(src);
                    Ok(Step::Switched(self.pos()))
                }
                // Having just finished a rotated file is still a switch (to nothing yet),
                // so that the caller journals what was finished.
                Err(e) if e.kind() == io::ErrorKind::NotFound && !self.finished.is_empty() => {
                    Ok(Step::Switched(None))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Step::Missing),
                Err(e) => Err(e),
            };
        };

        if cur.offset == 0 && cur.live {
            // Nothing read from this file yet, so no fingerprint can tell whether it was
            // truncated meanwhile; rotated files modified since reading it began hold its
            // earlier generations (copytruncate) and come first, oldest first.
            let (since, id) = (cur.since, cur.id);
            if let Some(next) = self.next_rotated(since, Some(id))? {
                self.notes.push(format!(
                    "{} was rotated before it was read; reading {} first",
                    self.path.display(),
                    next.name.display()
                ));
                // This file itself is reopened afterwards: as QUEUE_LOG, or, if it was
                // renamed, as the next rotated file.
                self.rotated_after = Some(since);
                self.cur = Some(next);
                return Ok(Step::Switched(self.pos()));
            }
        }
        let Some(cur) = self.cur.as_mut() else {
            unreachable!("current file")
        };
        if cur.offset > 0 && !cur.holds(&cur.pos())? {
            return self.on_truncation();
        }
        let n = read_some(&cur.file, &mut self.chunk, cur.offset)?;
        let is_final = n < self.chunk.len() && cur.quiet_for(self.grace);
        let split = lines::split(
            &self.chunk[..n],
            cur.offset,
            cur.skipping,
            is_final,
            MAX_ROWS_PER_STEP,
        );
        if split.consumed > 0 || !split.pieces.is_empty() {
            let region = self.region.as_ref();
            let read = build_read(cur, region, &self.chunk[..n], split, self.replay_pass);
            return Ok(Step::Read(read));
        }
        if is_final {
            self.notes
                .push(format!("finished rotated file {}", cur.name.display()));
            let mtime = mtime_ns(&cur.file.metadata()?);
            let key = (cur.id, head_hash(&cur.file)?);
            self.finished.push(key);
            self.done.push(key);
            self.rotated_after = Some(self.rotated_after.map_or(mtime, |a| a.max(mtime)));
            self.cur = None;
            return self.step();
        }
        if cur.rotated_since.is_some() {
            return Ok(Step::Idle);
        }
        match std::fs::metadata(&self.path) {
            Ok(meta) if id_of(&meta) != cur.id => {
                self.notes.push(format!(
                    "rotation: {} is a new file; finishing the old one first",
                    self.path.display()
                ));
                cur.rotated_since = Some(Instant::now());
                Ok(Step::Idle)
            }
            Ok(_) => Ok(Step::Idle),
            // Renamed away and not recreated yet: keep reading the file we hold.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Step::Idle),
            Err(e) => Err(e),
        }
    }

    /// The file we read no longer holds what we read: copytruncate, or rewritten in place.
    fn on_truncation(&mut self) -> io::Result<Step> {
        let mut cur = self.cur.take().expect("current file");
        let pos = cur.pos();
        if cur.rotated_since.is_some() {
            self.notes.push(format!(
                "rotated file {} changed under us; leaving it",
                cur.name.display()
            ));
            return Ok(Step::Switched(self.pos()));
        }
        self.replay_pass += 1;
        cur.rewind(pos.offset)?;
        let copy = self.find_sibling(|s| s.id != pos.id && s.holds(&pos).unwrap_or(false))?;
        match copy {
            Some(mut copy) => {
                copy.seek_to(&pos)?;
                copy.rotated_since = Some(Instant::now());
                self.notes.push(format!(
                    "{} was truncated (copytruncate); reading the rest of {} first",
                    self.path.display(),
                    copy.name.display()
                ));
                // QUEUE_LOG (the same file, from its start) is reopened after the copy.
                self.cur = Some(copy);
            }
            None => {
                self.notes.push(format!(
                    "{} was truncated or rewritten; reading it from the start",
                    self.path.display()
                ));
                self.cur = Some(cur);
            }
        }
        Ok(Step::Switched(self.pos()))
    }

    /// Accepts a [`Read`] once its rows are journaled.
    pub fn commit(&mut self, read: Read) {
        let Some(cur) = self.cur.as_mut() else { return };
        if read.pos.offset > cur.offset {
            cur.last_data = Instant::now();
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

fn build_read(
    cur: &Source,
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
        },
        fp,
    }
}

/// Rotated siblings of QUEUE_LOG: `queue_log.1`, `queue_log-20261123`, … (uncompressed).
pub fn siblings(path: &Path) -> io::Result<Vec<(PathBuf, Metadata)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rotated_name = name.len() > base.len()
            && name.starts_with(&base)
            && is_rotation_suffix(&name[base.len()..]);
        if !rotated_name {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            out.push((entry.path(), meta));
        }
    }
    Ok(out)
}

/// `.1`, `-20261123`, `.2026-11-23`, `_1700000000`: what logrotate (numbered or dateext)
/// and Asterisk's own rotation append. Not `.gz`, `.bak` or `.old`: compressed files
/// cannot be read, and copies an admin made must not be uploaded twice.
fn is_rotation_suffix(suffix: &str) -> bool {
    let mut chars = suffix.chars();
    matches!(chars.next(), Some('.' | '-' | '_'))
        && suffix.bytes().any(|b| b.is_ascii_digit())
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

/// The current size of the file with identity `id`: QUEUE_LOG itself or a rotated
/// sibling. None when it is nowhere to be found.
pub fn size_of(path: &Path, id: FileId) -> Option<u64> {
    if let Ok(m) = std::fs::metadata(path) {
        if id_of(&m) == id {
            return Some(m.len());
        }
    }
    siblings(path)
        .ok()?
        .into_iter()
        .find(|(_, m)| id_of(m) == id)
        .map(|(_, m)| m.len())
}

fn read_some(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub fn id_of(meta: &Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

/// Modification time in nanoseconds (saturating): orders rotated files.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Identifies a file's content independently of appends: a hash of its first 64 bytes.
fn head_hash(file: &File) -> io::Result<u64> {
    let mut head = [0u8; 64];
    let n = read_some(file, &mut head, 0)?;
    Ok(fnv(&head[..n]))
}

pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
