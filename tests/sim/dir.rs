//! A virtual queue_log directory for the real reader (`qlship::tail::Tail` over
//! [`Files`]): files by inode with what of their text the disk holds (`synced`), names
//! that renames, deletions and gzip change, and a clock. Open handles read a file by
//! inode, so a renamed or deleted file stays readable, as on Linux.

use qlship::journal::FileId;
use qlship::machine::generations::{head_of, rank_of, Gen, Rank, HEAD_MAX};
use qlship::tail::{Entry, Files, Handle};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub const QUEUE_LOG: &str = "/var/log/asterisk/queue_log";

pub struct VFile {
    pub text: Vec<u8>,
    /// How much of `text` is on the disk: a power cut keeps only that.
    pub synced: usize,
    pub mtime_ns: i64,
    pub gz: bool,
}

#[derive(Default)]
pub struct Dir {
    pub files: BTreeMap<u64, VFile>,
    /// File name (after `queue_log`) to inode: "" is QUEUE_LOG, ".1", ".2.gz", …
    pub names: BTreeMap<String, u64>,
    next_ino: u64,
    /// The monotonic clock (ms) and the wall clock's offset from it (ns).
    pub now_ms: u64,
    pub wall_offset_ns: i64,
}

impl Dir {
    pub fn wall_ns(&self) -> i64 {
        1_700_000_000_000_000_000 + self.now_ms as i64 * 1_000_000 + self.wall_offset_ns
    }

    pub fn create(&mut self, text: Vec<u8>, gz: bool, mtime_ns: i64) -> u64 {
        self.next_ino += 1;
        let ino = self.next_ino;
        self.files.insert(
            ino,
            VFile {
                text,
                synced: 0,
                mtime_ns,
                gz,
            },
        );
        ino
    }

    pub fn at(&self, suffix: &str) -> Option<u64> {
        self.names.get(suffix).copied()
    }
}

/// The reader's view of the shared directory.
#[derive(Clone)]
pub struct SimFiles(pub Rc<RefCell<Dir>>);

fn id(ino: u64) -> FileId {
    FileId { dev: 1, ino }
}

fn suffix_of(name: &Path) -> Option<String> {
    name.to_str()?.strip_prefix(QUEUE_LOG).map(str::to_owned)
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file")
}

impl Files for SimFiles {
    type Handle = SimHandle;

    fn list(&mut self, _path: &Path) -> io::Result<Vec<Entry>> {
        let dir = self.0.borrow();
        let mut out = Vec::new();
        for (suffix, &ino) in &dir.names {
            let (rank, gz) = if suffix.is_empty() {
                (Rank::Live, false)
            } else {
                match rank_of(suffix) {
                    Some(r) => r,
                    None => continue,
                }
            };
            let f = &dir.files[&ino];
            let (head, first_time) = head_of(&f.text[..f.text.len().min(HEAD_MAX)]);
            out.push(Entry {
                name: PathBuf::from(format!("{QUEUE_LOG}{suffix}")),
                gen: Gen {
                    id: id(ino),
                    rank,
                    gz: gz && f.gz,
                    len: f.text.len() as u64,
                    head,
                    first_time,
                    mtime_ns: f.mtime_ns,
                },
            });
        }
        Ok(out)
    }

    fn open(&mut self, name: &Path, gz: bool) -> io::Result<SimHandle> {
        let suffix = suffix_of(name).ok_or_else(not_found)?;
        let ino = self.0.borrow().at(&suffix).ok_or_else(not_found)?;
        assert_eq!(gz, self.0.borrow().files[&ino].gz, "{suffix}: gz");
        Ok(SimHandle {
            dir: self.0.clone(),
            ino,
        })
    }

    fn id_at(&mut self, _path: &Path) -> io::Result<Option<FileId>> {
        Ok(self.0.borrow().at("").map(id))
    }

    fn now_ms(&self) -> u64 {
        self.0.borrow().now_ms
    }
}

pub struct SimHandle {
    dir: Rc<RefCell<Dir>>,
    ino: u64,
}

impl Handle for SimHandle {
    fn id(&self) -> FileId {
        id(self.ino)
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let dir = self.dir.borrow();
        let text = &dir.files[&self.ino].text;
        let start = (offset as usize).min(text.len());
        let n = (text.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&text[start..start + n]);
        Ok(n)
    }

    fn text_len(&self) -> io::Result<Option<u64>> {
        let dir = self.dir.borrow();
        let f = &dir.files[&self.ino];
        Ok((!f.gz).then_some(f.text.len() as u64))
    }

    fn mtime_ns(&self) -> io::Result<i64> {
        Ok(self.dir.borrow().files[&self.ino].mtime_ns)
    }

    fn sync_handle(&self) -> Option<std::fs::File> {
        None
    }
}
