//! QUEUE_LOG as given, judged before anything starts. A missing file in an existing
//! directory is normal (Asterisk creates queue_log at its first event, and the daemon
//! waits for it); a directory, or a path whose directory does not exist, is a typo that
//! would otherwise make the daemon wait forever with one INFO line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum QueueLogProblem {
    /// The path names a directory.
    IsDirectory(PathBuf),
    /// The directory the file would be created in does not exist (or is not a
    /// directory): the second path.
    NoDirectory(PathBuf, PathBuf),
    /// The file does not exist (yet); its directory does.
    Missing(PathBuf),
    /// It exists but cannot be opened (permissions, …).
    Unreadable(PathBuf, io::Error),
}

impl QueueLogProblem {
    /// Whether the daemon must refuse to start (exit 2) rather than wait or retry:
    /// a missing file is waited for, and an unreadable one gets the daemon's own
    /// message naming the user and group to fix.
    pub fn stops_the_daemon(&self) -> bool {
        matches!(self, Self::IsDirectory(_) | Self::NoDirectory(..))
    }
}

impl fmt::Display for QueueLogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IsDirectory(p) => write!(
                f,
                "QUEUE_LOG {} is a directory: give the queue_log file itself (e.g. {})",
                p.display(),
                p.join("queue_log").display()
            ),
            Self::NoDirectory(p, dir) => write!(
                f,
                "QUEUE_LOG {}: the directory {} does not exist (qlship waits for a missing queue_log to appear, not for its directory: is the path right?)",
                p.display(),
                dir.display()
            ),
            Self::Missing(p) => write!(
                f,
                "QUEUE_LOG {} does not exist (yet): the daemon would wait for it to appear (is the path right, and has Asterisk logged a queue event?)",
                p.display()
            ),
            Self::Unreadable(p, e) => write!(f, "QUEUE_LOG {}: cannot open it: {e}", p.display()),
        }
    }
}

/// Looks at `path` the way the daemon will use it: a file it can open, or a file that
/// may yet appear in a directory that exists.
pub fn examine(path: &Path) -> Result<(), QueueLogProblem> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(QueueLogProblem::IsDirectory(path.to_owned())),
        Ok(_) => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) => Err(QueueLogProblem::Unreadable(path.to_owned(), e)),
        },
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            // A relative name without a directory lives in the current one.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if dir.is_dir() {
                Err(QueueLogProblem::Missing(path.to_owned()))
            } else {
                Err(QueueLogProblem::NoDirectory(
                    path.to_owned(),
                    dir.to_owned(),
                ))
            }
        }
        Err(e) => Err(QueueLogProblem::Unreadable(path.to_owned(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_typo_from_a_file_not_written_yet() {
        let dir = tempfile::tempdir().unwrap();
        let ql = dir.path().join("queue_log");
        let e = examine(&ql).unwrap_err();
        assert!(
            matches!(&e, QueueLogProblem::Missing(p) if *p == ql) && !e.stops_the_daemon(),
            "{e:?}"
        );
        std::fs::write(&ql, "").unwrap();
        assert!(examine(&ql).is_ok());

        let e = examine(dir.path()).unwrap_err();
        assert!(
            matches!(e, QueueLogProblem::IsDirectory(_)) && e.stops_the_daemon(),
            "{e:?}"
        );
        let want = format!("give the queue_log file itself (e.g. {})", ql.display());
        assert!(e.to_string().ends_with(&want), "{e}");

        let nowhere = dir.path().join("asterisk/queue_log");
        let e = examine(&nowhere).unwrap_err();
        assert!(
            matches!(&e, QueueLogProblem::NoDirectory(_, d) if *d == dir.path().join("asterisk"))
                && e.stops_the_daemon(),
            "{e:?}"
        );
        // A "directory" that is a file.
        let under_a_file = ql.join("queue_log");
        let e = examine(&under_a_file).unwrap_err();
        assert!(
            matches!(&e, QueueLogProblem::NoDirectory(_, d) if *d == ql),
            "{e:?}"
        );
    }
}
