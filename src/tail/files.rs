//! What the reader needs of a filesystem, so that the same reader runs over the disk
//! (`disk`) and over the simulator's virtual directory (`tests/sim/`), where rotations,
//! compression, power cuts and restarts are explored by the thousand.

use crate::journal::FileId;
use crate::machine::generations::Gen;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// One generation and where it is.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: PathBuf,
    pub gen: Gen,
}

pub trait Files {
    type Handle: Handle;
    /// QUEUE_LOG (when it exists) and every rotated generation beside it.
    fn list(&mut self, path: &Path) -> io::Result<Vec<Entry>>;
    /// Opens a file to read; `gz`: its text is inflated.
    fn open(&mut self, name: &Path, gz: bool) -> io::Result<Self::Handle>;
    /// The identity of the file QUEUE_LOG names now (None: there is none).
    fn id_at(&mut self, path: &Path) -> io::Result<Option<FileId>>;
    /// Milliseconds on a clock that never steps.
    fn now_ms(&self) -> u64;
}

/// An open file: it stays readable when renamed or deleted.
pub trait Handle {
    fn id(&self) -> FileId;
    /// Fills `buf` from `offset` on as far as the file goes; returns how much.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Its length now (None: compressed, it never changes).
    fn text_len(&self) -> io::Result<Option<u64>>;
    fn mtime_ns(&self) -> io::Result<i64>;
    /// A descriptor the journal can fdatasync before it syncs (None: nothing to sync).
    fn sync_handle(&self) -> Option<File>;
}
