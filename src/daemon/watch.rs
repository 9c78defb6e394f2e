//! Wakes the reader when the queue_log changes, so that an idle qlship need not poll.
//!
//! inotify watches the queue_log itself for appends and truncation (IN_MODIFY), and its
//! directory only for names coming and going (rotation, re-creation, deletion). The
//! directory also holds Asterisk's `full` and `messages` logs, written on every call
//! event: watching it for modifications woke qlship about ten times per line written
//! to them (168 wake-ups a second at 20 lines a second in `scripts/bench`).
//!
//! A watch follows its inode across renames: after a rename rotation the old watch
//! keeps reporting the late rows Asterisk writes to the rotated file before it reopens
//! queue_log, while the reader finishes that file. When the name points at a new file
//! (created or moved there) it gets a watch of its own; the file before it keeps its
//! watch until the next such change, so at most two files are watched.
//!
//! Without inotify (or while the directory does not exist) the reader keeps polling.

use super::*;
use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The daemon's log target, as before the daemon was split into files.
const LOG: &str = "qlship::daemon";

/// What the directory is watched for: names appearing, going, moving; and its own end.
const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;
/// What a queue_log file is watched for: writes and truncation (both IN_MODIFY), and
/// changes of mode or owner (a file made readable again). Not IN_CLOSE_WRITE: a writer
/// that appends and closes would wake the reader twice for one change.
const FILE_MASK: u32 = libc::IN_MODIFY | libc::IN_ATTRIB;

/// One inotify event, as read from the descriptor.
#[derive(Debug, PartialEq)]
pub(super) struct Event {
    pub wd: i32,
    pub mask: u32,
    /// The name in the directory the event is about; empty for a file's own events.
    pub name: OsString,
}

/// Splits a read from an inotify descriptor into events.
pub(super) fn parse(mut bytes: &[u8]) -> Vec<Event> {
    // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
    // with the name padded with NULs to `len`.
    let mut out = Vec::new();
    while bytes.len() >= 16 {
        let field = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let len = field(12) as usize;
        let name = bytes.get(16..16 + len).unwrap_or_default();
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push(Event {
            wd: field(0) as i32,
            mask: field(4),
            name: OsString::from_vec(name.to_vec()),
        });
        bytes = bytes.get(16 + len..).unwrap_or_default();
    }
    out
}

/// What a batch of events means for the reader.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Outcome {
    /// Something the reader must look at changed.
    pub wake: bool,
    /// The directory itself went away (or events were lost with no way to catch up):
    /// nothing more will come, back to polling.
    pub lost: bool,
}

/// The inotify descriptor and its watches.
pub(super) struct Watches {
    inotify: smol::Async<std::fs::File>,
    /// The queue_log's path and its name in the directory.
    file: CString,
    name: OsString,
    dir_wd: i32,
    /// The file QUEUE_LOG names now, when it exists.
    live_wd: Option<i32>,
    /// The file it named before, which the reader may still be finishing.
    previous_wd: Option<i32>,
}

impl Watches {
    /// Watches the directory, then the file (in that order: a file created between the
    /// two is then seen one way or the other). Fails without inotify or the directory.
    pub(super) fn start(queue_log: &Path) -> Result<Watches, String> {
        let dir = match queue_log.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| format!("{}: NUL in the path", p.display()))
        };
        let (dir_c, file) = (cstr(&dir)?, cstr(queue_log)?);
        // SAFETY: a plain syscall; the descriptor is owned by the File from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "inotify unavailable: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: fd is a new descriptor nothing else owns.
        let inotify = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let inotify = smol::Async::new(inotify).map_err(|e| format!("inotify: {e}"))?;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let dir_wd = unsafe { libc::inotify_add_watch(fd, dir_c.as_ptr(), DIR_MASK) };
        if dir_wd < 0 {
            return Err(format!(
                "cannot watch {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        let mut w = Watches {
            inotify,
            file,
            name: queue_log.file_name().unwrap_or_default().to_owned(),
            dir_wd,
            live_wd: None,
            previous_wd: None,
        };
        w.watch_file();
        Ok(w)
    }

    /// (Re)watches the file QUEUE_LOG names now. A new file's watch takes over; the one
    /// before it is kept for the reader to finish the rotated file, and any older one
    /// is removed.
    fn watch_file(&mut self) {
        let fd = self.inotify.get_ref().as_raw_fd();
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd, self.file.as_ptr(), FILE_MASK) };
        if wd < 0 {
            // Not there (yet): its creation in the directory brings us back here.
            return;
        }
        if self.live_wd == Some(wd) {
            return;
        }
        if let Some(old) = self.previous_wd.take().filter(|&old| old != wd) {
            // SAFETY: a valid descriptor; a watch already gone only fails with EINVAL.
            unsafe { libc::inotify_rm_watch(fd, old) };
        }
        self.previous_wd = self.live_wd.replace(wd).filter(|&p| p != wd);
    }

    /// Acts on a batch of events: re-watches the file when its name was (re)created.
    pub(super) fn handle(&mut self, events: &[Event]) -> Outcome {
        let mut out = Outcome::default();
        for e in events {
            if e.mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were dropped, perhaps a creation: look again at everything.
                self.watch_file();
                out.wake = true;
            } else if e.wd == self.dir_wd {
                if e.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                    out.lost = true;
                } else if e.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 && e.name == self.name
                {
                    self.watch_file();
                }
                // Any other name coming or going may be the file being rotated away
                // (under whatever name logrotate gives it): rare, so always look.
                out.wake = true;
            } else if Some(e.wd) == self.live_wd || Some(e.wd) == self.previous_wd {
                if e.mask & libc::IN_IGNORED != 0 {
                    // The file was deleted (or its watch removed): nothing more from it.
                    if self.live_wd == Some(e.wd) {
                        self.live_wd = None;
                    }
                    if self.previous_wd == Some(e.wd) {
                        self.previous_wd = None;
                    }
                }
                out.wake = true;
            }
            // Anything else is the end of a watch removed above: nothing to do.
        }
        out
    }

    /// Reads the events waiting now, without blocking (tests).
    #[cfg(test)]
    fn pending(&mut self) -> Vec<Event> {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        match self.inotify.get_ref().read(&mut buf) {
            Ok(n) => parse(&buf[..n]),
            Err(_) => Vec::new(),
        }
    }
}

/// The daemon's watch task: wakes the reader on every change that matters to it.
pub(super) async fn watch_queue_log(sh: Arc<Shared>) {
    let mut watches = match Watches::start(&sh.settings.queue_log) {
        Ok(w) => w,
        Err(e) => {
            debug!(target: LOG, "{e}: polling every second");
            return std::future::pending().await;
        }
    };
    sh.watching.store(true, Ordering::Relaxed);
    // A change between the reader's last look and the watches being in place would
    // otherwise wait for the safety-net poll.
    sh.wake_reader.notify();
    let mut buf = [0u8; 4096];
    loop {
        use smol::io::AsyncReadExt;
        let outcome = match watches.inotify.read(&mut buf).await {
            Ok(n) if n > 0 => watches.handle(&parse(&buf[..n])),
            _ => Outcome {
                wake: true,
                lost: true,
            },
        };
        if outcome.wake || outcome.lost {
            sh.wake_reader.notify();
            // A rotation changes the file being read without any row.
            sh.wake_status.notify();
        }
        if outcome.lost {
            // The directory went away: back to polling.
            sh.watching.store(false, Ordering::Relaxed);
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
