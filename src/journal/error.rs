//! What can go wrong with the journal, and which of it is fatal.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum JournalError {
    /// Another process holds the journal.
    Locked(PathBuf),
    /// The state directory cannot be created or written.
    Dir(PathBuf, io::Error),
    Sled(sled::Error),
    /// A record that does not decode: the journal is damaged.
    Corrupt(String),
    /// fsync failed: fatal, never retried.
    Fsync(io::Error),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Locked(p) => write!(
                f,
                "journal {} is in use by another qlship (one daemon per --state-dir)",
                p.display()
            ),
            JournalError::Dir(p, e) => write!(
                f,
                "state dir {}: {e} (it must be writable by the user qlship runs as)",
                p.display()
            ),
            JournalError::Sled(e) if self.is_disk_full() => write!(
                f,
                "journal: disk full ({e}); free space on the state dir's filesystem, qlship resumes from its last durable state"
            ),
            JournalError::Sled(e) => write!(f, "journal: {e}"),
            JournalError::Corrupt(what) => write!(f, "journal is damaged: {what}"),
            JournalError::Fsync(e) => write!(f, "journal fsync failed: {e}"),
        }
    }
}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        JournalError::Sled(e)
    }
}

impl JournalError {
    /// Disk full despite the reserve: fatal, because sled stays failed after a write
    /// error; the restart resumes from the last durable state.
    pub fn is_disk_full(&self) -> bool {
        match self {
            JournalError::Sled(sled::Error::Io(e)) | JournalError::Fsync(e) => {
                e.raw_os_error() == Some(libc::ENOSPC)
            }
            _ => false,
        }
    }
}
