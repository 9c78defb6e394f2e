//! What salvaging a moved-aside journal found, and why it could fail, for the log.

use super::super::JournalError;
use std::fmt::{self, Write as _};
use std::io;
use std::path::PathBuf;

/// Why nothing could be carried over from a moved-aside journal.
#[derive(Debug)]
pub enum SalvageFailure {
    /// The directory went before the salvage ran (removed by hand).
    Gone,
    /// The new journal had been written to: sequence numbers and slots would collide.
    InUse,
    /// That many attempts to read it did not finish: sled crashes on it.
    AttemptsSpent(u32),
    /// The attempt could not be counted, so a sled crashing on it would not be given up
    /// on: not tried.
    CannotCount(PathBuf, io::Error),
    SledRefuses(sled::Error),
    SledPanicked,
    /// Its meta record does not decode: its rows cannot be told apart by target.
    MetaUndecodable(crate::row::DecodeError),
    MetaUnreadable(sled::Error),
    /// Spooled rows but no reading position (never written so).
    NoPosition,
    /// Writing the new journal failed: tried again at the next start.
    Write(JournalError),
}

impl fmt::Display for SalvageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SalvageFailure::Gone => write!(f, "it is no longer there"),
            SalvageFailure::InUse => write!(f, "the new journal was already in use"),
            SalvageFailure::AttemptsSpent(n) => {
                write!(
                    f,
                    "{n} attempts to read it did not finish: sled crashes on it"
                )
            }
            SalvageFailure::CannotCount(marker, e) => {
                write!(f, "cannot count the attempt in {}: {e}", marker.display())
            }
            SalvageFailure::SledRefuses(e) => write!(f, "sled cannot open it: {e}"),
            SalvageFailure::SledPanicked => write!(f, "sled panicked while reading it"),
            SalvageFailure::MetaUndecodable(e) => write!(
                f,
                "its meta record does not decode ({e}), so its rows cannot be told apart by target"
            ),
            SalvageFailure::MetaUnreadable(e) => write!(f, "its meta record cannot be read: {e}"),
            SalvageFailure::NoPosition => {
                write!(f, "it holds spooled rows but no reading position")
            }
            SalvageFailure::Write(e) => write!(f, "{e}; it is tried again at the next start"),
        }
    }
}

/// What salvaging a moved-aside journal found, for the startup log.
#[derive(Debug, Default)]
pub struct SalvageReport {
    pub aside: PathBuf,
    /// Rows carried over per target key ("" in single-target mode), in slot order.
    pub rows: Vec<(String, u64)>,
    /// The reading position was kept, and with it what was salvaged (without one the
    /// journal had read nothing, and the new one starts as any new journal).
    pub position_kept: bool,
    /// The journal had lost commits it had made durable: every row salvaged, and every
    /// row read from its position on, is in doubt.
    pub stale: bool,
    /// What could not be read (chunks, rows, rings), for the log.
    pub lost: Vec<String>,
    /// Nothing could be carried over: why. The directory is kept for the operator.
    pub failed: Option<SalvageFailure>,
    /// Carried over by an earlier start that stopped before it could tidy up.
    pub earlier: bool,
}

impl SalvageReport {
    /// Logs it: loud, because rows of files that may no longer exist are at stake.
    pub fn log(&self) {
        let aside = self.aside.display();
        if let Some(why) = &self.failed {
            log::error!(
                "the damaged journal {aside} could not be salvaged ({why}): its spooled rows, which may include rows of rotated files that no longer exist, were NOT carried over; the directory is kept for the operator"
            );
            return;
        }
        if self.earlier {
            log::warn!("the damaged journal {aside} was salvaged by an earlier start");
            return;
        }
        if !self.position_kept {
            log::warn!("the damaged journal {aside} had read nothing: nothing to salvage");
            return;
        }
        let mut per_target = String::new();
        for (key, n) in &self.rows {
            let name = if key.is_empty() {
                "the single target"
            } else {
                key
            };
            let _ = write!(per_target, "; {n} for {name}");
        }
        let total: u64 = self.rows.iter().map(|(_, n)| n).sum();
        let doubt = if self.stale {
            "it had lost commits it made durable, so every one of them, and every row read again from its position on, is in doubt and checked with the server (checkRow) before it is sent"
        } else {
            "rows in flight or in doubt are checked with the server (checkRow) before they are sent; reading resumes where it was"
        };
        log::warn!(
            "salvaged {total} spooled rows from the damaged journal {aside}{per_target}; {doubt}"
        );
        for what in &self.lost {
            log::error!("salvaging {aside}: {what} could not be read and is lost");
        }
    }
}
