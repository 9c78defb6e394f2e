//! One file being read: QUEUE_LOG, a rotated generation, or a compressed one, with
//! where reading has got and the fingerprint before it.

use super::files::Handle;
use crate::journal::{FileId, FilePos};
use crate::machine::generations::{self, HEAD_MAX};
use crate::machine::read::Kind;
use std::io;
use std::path::{Path, PathBuf};

pub const FP_MAX: usize = 256;

pub struct Source<H> {
    pub file: H,
    pub id: FileId,
    pub name: PathBuf,
    pub kind: Kind,
    pub gz: bool,
    pub offset: u64,
    pub skipping: bool,
    /// The bytes just before `offset` (at most FP_MAX).
    pub fp: Vec<u8>,
    /// Hash of its first line; `head_whole` once that line can no longer change.
    pub head: u64,
    head_whole: bool,
    /// Since it last grew or was seen rotated (ms): how long a writer has been quiet.
    pub quiet_since: u64,
    /// Modification time (ns) when reading began, and whether it was QUEUE_LOG then.
    pub since: i64,
    pub live: bool,
    /// Rows starting before this offset are read again, in doubt (0: none).
    pub replay_until: u64,
}

impl<H: Handle> Source<H> {
    pub fn new(file: H, name: &Path, kind: Kind, gz: bool, now_ms: u64) -> io::Result<Source<H>> {
        let mut src = Source {
            id: file.id(),
            since: file.mtime_ns()?,
            file,
            name: name.to_owned(),
            kind,
            gz,
            offset: 0,
            skipping: false,
            fp: Vec::new(),
            head: 0,
            head_whole: false,
            quiet_since: now_ms,
            live: kind == Kind::Live,
            replay_until: 0,
        };
        src.refresh_head()?;
        Ok(src)
    }

    pub fn pos(&self) -> FilePos {
        FilePos {
            id: self.id,
            offset: self.offset,
            fp_hash: super::fnv(&self.fp),
            fp_len: self.fp.len() as u32,
            skipping: self.skipping,
            since: self.since,
            live: self.live,
            replay_until: self.replay_until,
            replay_pass: 0,
            head: self.head,
        }
    }

    /// Learns the first line once it is whole (a new QUEUE_LOG may not have one yet).
    pub fn refresh_head(&mut self) -> io::Result<()> {
        // Nothing read yet: a truncation cannot be seen by a fingerprint, so the first
        // line is looked at again.
        if self.head_whole && self.offset > 0 {
            return Ok(());
        }
        let mut first = [0u8; HEAD_MAX];
        let n = self.file.read_at(&mut first, 0)?;
        self.head = generations::head_of(&first[..n]).0;
        self.head_whole = n == HEAD_MAX || first[..n].contains(&b'\n') || self.gz;
        Ok(())
    }

    /// Whether the file still holds, just before `pos.offset`, the bytes we read there.
    pub fn holds(&mut self, pos: &FilePos) -> io::Result<bool> {
        if self.file.text_len()?.is_some_and(|len| len < pos.offset) {
            return Ok(false);
        }
        let mut buf = vec![0u8; pos.fp_len as usize];
        let start = pos.offset - u64::from(pos.fp_len);
        let n = self.file.read_at(&mut buf, start)?;
        Ok(n == buf.len() && super::fnv(&buf) == pos.fp_hash)
    }

    /// Goes on at `pos` (which this file holds).
    pub fn seek_to(&mut self, pos: &FilePos) -> io::Result<()> {
        self.seek(pos.offset)?;
        self.skipping = pos.skipping;
        self.since = pos.since;
        self.live = pos.live;
        self.replay_until = pos.replay_until;
        Ok(())
    }

    /// Goes on at `offset`, a line's end (where this file was left before).
    pub fn seek(&mut self, offset: u64) -> io::Result<()> {
        let fp_len = offset.min(FP_MAX as u64) as usize;
        let mut fp = vec![0u8; fp_len];
        let n = self.file.read_at(&mut fp, offset - fp_len as u64)?;
        if n < fp_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than where it was left",
            ));
        }
        self.fp = fp;
        self.offset = offset;
        Ok(())
    }

    /// Back to the start of the file, which shrank or was rewritten under an offset
    /// qlship had reached (`reached`): the rows up to there are in doubt.
    pub fn rewind(&mut self, reached: u64) -> io::Result<()> {
        let len = self.file.text_len()?.unwrap_or(0);
        let resume = crate::machine::read::resume_in(reached, false, len);
        self.replay_until = self.replay_until.max(resume.replay_until);
        self.offset = resume.offset;
        self.fp.clear();
        self.skipping = false;
        self.since = self.file.mtime_ns()?;
        Ok(())
    }
}
