//! Counters for the metrics file: requests per target by command and outcome (with the
//! time the server last answered anything, for the stall detector), and a few
//! process-wide figures: rows read, qlship's own fsyncs and what the kernel says this
//! process wrote (`/proc/self/io`), the flash-wear figures.
//!
//! All counters count since the process started (Prometheus handles the reset);
//! the rows acknowledged come from the journal and count since it was created.

use crate::atomic64::{AtomicI64, AtomicU64};
use crate::http::HttpError;
use crate::status::{RequestCount, TargetStatus};
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    CheckHwm,
    CheckRow,
    InsertAll,
    CheckHb,
    CheckFb,
}

const COMMANDS: [Command; 5] = [
    Command::CheckHwm,
    Command::CheckRow,
    Command::InsertAll,
    Command::CheckHb,
    Command::CheckFb,
];

impl Command {
    /// The protocol's own name for it.
    pub fn name(self) -> &'static str {
        match self {
            Command::CheckHwm => "checkHWM",
            Command::CheckRow => "checkRow",
            Command::InsertAll => "insertAll",
            Command::CheckHb => "checkHb",
            Command::CheckFb => "checkFb",
        }
    }
}

/// How a request ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `KO: …` from the server.
    Ko,
    /// An HTTP status other than 2xx.
    HttpStatus,
    /// An answer that is not the protocol's (or not what the command implies).
    BadAnswer,
    Connect,
    Tls,
    /// Dropped or timed out after the request may have been sent.
    Transport,
}

const OUTCOMES: [Outcome; 7] = [
    Outcome::Ok,
    Outcome::Ko,
    Outcome::HttpStatus,
    Outcome::BadAnswer,
    Outcome::Connect,
    Outcome::Tls,
    Outcome::Transport,
];

impl Outcome {
    pub fn of<T>(result: &Result<T, HttpError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(HttpError::Ko(_)) => Outcome::Ko,
            Err(HttpError::Status(..)) => Outcome::HttpStatus,
            Err(HttpError::BadAnswer(_) | HttpError::Unexpected(_)) => Outcome::BadAnswer,
            Err(HttpError::Connect(_)) => Outcome::Connect,
            Err(HttpError::Tls(_)) => Outcome::Tls,
            Err(HttpError::Transport(_)) => Outcome::Transport,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Ko => "ko",
            Outcome::HttpStatus => "http_status",
            Outcome::BadAnswer => "bad_answer",
            Outcome::Connect => "connect_error",
            Outcome::Tls => "tls_error",
            Outcome::Transport => "transport_error",
        }
    }

    /// Whether the server answered (whatever it said).
    fn answered(self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::Ko | Outcome::HttpStatus | Outcome::BadAnswer
        )
    }
}

/// One target's requests; shared by every clone of its HTTP client.
#[derive(Debug, Default)]
pub struct Meter {
    counts: [[AtomicU64; OUTCOMES.len()]; COMMANDS.len()],
    /// Unix time of the last answer of any kind; 0: never.
    last_answer: AtomicI64,
}

impl Meter {
    pub fn record<T>(&self, command: Command, result: &Result<T, HttpError>) {
        let outcome = Outcome::of(result);
        let c = COMMANDS.iter().position(|&c| c == command).unwrap_or(0);
        let o = OUTCOMES.iter().position(|&o| o == outcome).unwrap_or(0);
        self.counts[c][o].fetch_add(1, Ordering::Relaxed);
        if outcome.answered() {
            self.last_answer
                .store(super::now_unix().max(1), Ordering::Relaxed);
        }
    }

    /// Copies the counts (those above zero) and the last answer into a target's status.
    pub fn fill(&self, t: &mut TargetStatus) {
        t.requests.clear();
        for (c, command) in COMMANDS.iter().enumerate() {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let count = self.counts[c][o].load(Ordering::Relaxed);
                if count > 0 {
                    t.requests.push(RequestCount {
                        command: command.name().into(),
                        outcome: outcome.name().into(),
                        count,
                    });
                }
            }
        }
        let at = self.last_answer.load(Ordering::Relaxed);
        t.last_answer = (at > 0).then_some(at);
    }
}

/// Rows read from queue_log files (every row, wanted by a target or not).
pub static ROWS_READ: AtomicU64 = AtomicU64::new(0);
/// `fsync` calls made by qlship's own code: the journal's log file at each durability
/// point, the queue_log being read before it (fdatasync) when it was written to since
/// the last one, and directories after a rename or creation. sled's internal syncs (its own
/// flush, blob files) are not counted; the kernel's `write_bytes` covers their bytes.
pub static FSYNCS: AtomicU64 = AtomicU64::new(0);

pub fn count_rows_read(n: usize) {
    ROWS_READ.fetch_add(n as u64, Ordering::Relaxed);
}

pub fn count_fsync() {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
}

/// What the kernel counted for this process (all its threads), from `/proc/self/io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcIo {
    /// Bytes this process caused to be sent to storage (page cache pages it dirtied);
    /// tmpfs writes are not in it. This is the flash-wear figure.
    pub write_bytes: u64,
    /// Bytes passed to write(2) and friends, whatever the file system.
    pub wchar: u64,
}

/// None when the kernel has no task I/O accounting (some router kernels).
pub fn proc_io() -> Option<ProcIo> {
    parse_proc_io(&std::fs::read_to_string("/proc/self/io").ok()?)
}

pub fn parse_proc_io(text: &str) -> Option<ProcIo> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    Some(ProcIo {
        write_bytes: field("write_bytes")?,
        wchar: field("wchar")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AnswerError;

    #[test]
    fn counts_by_command_and_outcome_and_notes_answers_only() {
        let m = Meter::default();
        let mut t = TargetStatus::default();
        m.record::<()>(
            Command::InsertAll,
            &Err(HttpError::Connect("refused".into())),
        );
        m.fill(&mut t);
        assert_eq!(t.last_answer, None, "a refused connection is no answer");
        m.record(Command::InsertAll, &Ok(()));
        m.record(Command::InsertAll, &Ok(()));
        m.record::<()>(Command::CheckRow, &Err(HttpError::Ko("no".into())));
        m.record::<()>(
            Command::CheckHwm,
            &Err(HttpError::BadAnswer(AnswerError::NoStatus)),
        );
        m.fill(&mut t);
        let got: Vec<(&str, &str, u64)> = t
            .requests
            .iter()
            .map(|r| (r.command.as_str(), r.outcome.as_str(), r.count))
            .collect();
        assert_eq!(
            got,
            [
                ("checkHWM", "bad_answer", 1),
                ("checkRow", "ko", 1),
                ("insertAll", "ok", 2),
                ("insertAll", "connect_error", 1),
            ]
        );
        let at = t.last_answer.expect("answered");
        assert!((super::super::now_unix() - at).abs() <= 1);
    }

    #[test]
    fn reads_the_kernels_io_accounting() {
        let text = "rchar: 10\nwchar: 2048\nsyscr: 1\nsyscw: 2\nread_bytes: 0\nwrite_bytes: 40960\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_proc_io(text),
            Some(ProcIo {
                write_bytes: 40960,
                wchar: 2048
            })
        );
        assert_eq!(parse_proc_io("rchar: 1\n"), None);
        // Where this kernel has it, it reads (the build machines do).
        if std::path::Path::new("/proc/self/io").exists() {
            assert!(proc_io().is_some());
        }
    }
}
