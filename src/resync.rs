//! Deciding which rows of an in-doubt set the server already holds.
//!
//! A set of spooled rows is "in doubt" when a batch's fate is unknown (crash, timeout,
//! dropped connection) or when a fresh journal takes over a partition and rows sit at
//! the watermark. For each distinct row the server reports how many identical copies it
//! stores (`checkRow`). Some of those copies may be older, already acknowledged rows with
//! the same content (two identical lines in the same second are two rows), so the
//! acknowledged copies we still remember ([`AckedRing`]) are subtracted first. The rest
//! of the server's copies are matched, in file order, against the in-doubt copies.
//! Pure: no I/O, no clock.

use crate::row::{put_varint, Cursor, DecodeError};
use std::collections::{HashMap, VecDeque};

/// Identities of recently acknowledged rows, with their times, and for rows read again
/// after the file shrank or was rewritten, the pass over the file that read them.
///
/// Only rows within [`RING_WINDOW_SECS`] of queue_log time of the last one acknowledged,
/// either side, and at most [`RING_CAP`] of them, are kept: identical rows share their
/// timestamp, and rows in doubt follow the acknowledged ones in the file, so rows of
/// other times cannot be confused with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckedRing {
    entries: VecDeque<Acked>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Acked {
    time: i64,
    identity: u64,
    /// The replay pass that read it (0: read once, as new).
    replay: u64,
    /// A row read again and found already stored: no copy of its own on the server
    /// (the copy is the one acknowledged when the line was first read, or shipped
    /// before a power cut).
    found_again: bool,
}

pub const RING_WINDOW_SECS: i64 = 300;
pub const RING_CAP: usize = 2048;
/// At least a batch (500 rows) and then some.
pub const RING_RECENT: usize = 512;

/// Marks the encoding with replay passes (a count can never be this large); the older
/// encoding, count first, is still read.
const FLAGGED: u64 = u64::MAX;

impl AckedRing {
    pub fn add(&mut self, time: i64, identity: u64) {
        self.add_as(time, identity, 0, false);
    }

    /// Adds `other`'s entries after this ring's, as they are (no pruning).
    pub fn append(&mut self, other: &AckedRing) {
        self.entries.extend(other.entries.iter().copied());
    }

    /// `replay`: the pass that read the row again after the file shrank or was
    /// rewritten (0: none); `found_again`: such a row, found already stored.
    pub fn add_as(&mut self, time: i64, identity: u64, replay: u64, found_again: bool) {
        self.entries.push_back(Acked {
            time,
            identity,
            replay,
            found_again,
        });
    }

    /// Forgets entries outside the window and beyond the cap. The window is around the
    /// last row acknowledged, not the greatest time seen: after a Pi without an RTC
    /// boots a year in the past, its new rows are a year "older" than the ones before,
    /// and a window at the greatest time forgot every one of them at once, so a copy in
    /// doubt was taken for stored and lost (found by the simulator, clock steps).
    ///
    /// The last [`RING_RECENT`] acknowledgements are kept whatever their times: a file
    /// read again after a power cut acknowledges rows of other times in between, and a
    /// clock that stepped makes neighbours in the file years apart, so the window alone
    /// forgot twins acknowledged a batch earlier (found by the simulator).
    pub fn prune(&mut self) {
        let Some(last) = self.entries.back().map(|e| e.time) else {
            return;
        };
        let recent_from = self.entries.len().saturating_sub(RING_RECENT);
        let mut i = 0;
        self.entries.retain(|e| {
            i += 1;
            i > recent_from || e.time.abs_diff(last) <= RING_WINDOW_SECS.unsigned_abs()
        });
        while self.entries.len() > RING_CAP {
            self.entries.pop_front();
        }
    }

    /// Lines of `identity` known stored on the server, for a row read for the first
    /// time: the copies acknowledged as their own, or, if more, the lines any one pass
    /// over the file acknowledged (a pass reads each line once, so its entries are
    /// distinct lines, each with a copy stored). Rows read again and found stored are
    /// the same copy as an earlier entry, so they are not added to the own copies; but
    /// that entry can be missing: a journal that lost durable commits comes back with
    /// a ring that never saw the line's first copy acknowledged, while a later pass
    /// found it (the simulator, `case8_salvage`: its twin was taken for stored).
    pub fn count(&self, identity: u64) -> u64 {
        let same = self.entries.iter().filter(|e| e.identity == identity);
        let own = same.clone().filter(|e| !e.found_again).count();
        let mut per_pass: Vec<(u64, usize)> = Vec::new();
        for e in same {
            match per_pass.iter_mut().find(|(pass, _)| *pass == e.replay) {
                Some((_, n)) => *n += 1,
                None => per_pass.push((e.replay, 1)),
            }
        }
        let widest_pass = per_pass.iter().map(|&(_, n)| n).max().unwrap_or(0);
        own.max(widest_pass) as u64
    }

    /// Acknowledged copies that were themselves read again, by replay pass `replay`.
    pub fn count_replayed(&self, identity: u64, replay: u64) -> u64 {
        let same_pass = self.entries.iter().filter(|e| e.replay == replay);
        same_pass.filter(|e| e.identity == identity).count() as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.entries.len() * 17);
        put_varint(&mut out, FLAGGED);
        put_varint(&mut out, self.entries.len() as u64);
        for e in &self.entries {
            out.extend_from_slice(&e.time.to_be_bytes());
            out.extend_from_slice(&e.identity.to_be_bytes());
            put_varint(&mut out, e.replay << 1 | u64::from(e.found_again));
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut cur = Cursor { bytes, at: 0 };
        let first = cur.varint()?;
        let flagged = first == FLAGGED;
        let n = if flagged { cur.varint()? } else { first };
        if n > RING_CAP as u64 * 2 {
            return Err(DecodeError::OutOfRange("acknowledged ring length"));
        }
        let mut entries = VecDeque::new();
        for _ in 0..n {
            let time = cur.u64()? as i64;
            let identity = cur.u64()?;
            let flags = if flagged { cur.varint()? } else { 0 };
            entries.push_back(Acked {
                time,
                identity,
                replay: flags >> 1,
                found_again: flags & 1 != 0,
            });
        }
        Ok(Self { entries })
    }
}

/// Marks a pass of rows read for the first time yet in doubt: those a journal that lost
/// durable commits goes on reading from its stale position (the lost commits may have
/// shipped them). Each of them is a line of its own, as a row read once is, so every
/// acknowledged copy of its identity in the ring is another line, counted against the
/// server's copies ([`AckedRing::count`]); and a copy found on the server is the row's
/// own, not one acknowledged before. A pass of rows read again counts only its own
/// acknowledgements; lumping these rows into one undercounted: a twin acknowledged
/// just before the stale position, in another pass, was taken for the copy of the row
/// after it (the simulator, `case8_salvage`).
pub const FIRST_READ_IN_DOUBT: u64 = 1 << 62;

/// Whether `pass` reads rows for the first time, in doubt (see [`FIRST_READ_IN_DOUBT`]).
pub fn is_first_read(pass: u64) -> bool {
    pass & FIRST_READ_IN_DOUBT != 0
}

/// Whether a row of `pass` found stored on the server has no copy of its own there: a
/// row read again, whose copy is the one acknowledged when its line was first read.
pub fn found_is_not_own(pass: u64) -> bool {
    pass != 0 && !is_first_read(pass)
}

/// The pass a reader starts when it reads a file again after `pass`: above it, and
/// always a pass of rows read again.
pub fn next_pass(pass: u64) -> u64 {
    (pass & !FIRST_READ_IN_DOUBT).saturating_add(1)
}

/// The pass the reader goes on in from the position of a journal that lost durable
/// commits (the lost commits may have read and shipped the rows after it, so they are
/// all in doubt): inside a region being read again (`in_replay`), that region's pass,
/// so that twins on either side of the position count against each other as any of
/// one pass do; past it, a pass of first reads in doubt above every pass used so far
/// (of the position and of every spooled row, `spooled`). Its spooled rows keep their
/// passes: each pass's acknowledgements in the ring still count for it.
pub fn stale_position_pass(
    in_replay: bool,
    replay_pass: u64,
    spooled: impl IntoIterator<Item = u64>,
) -> u64 {
    if in_replay {
        return replay_pass;
    }
    // By number, without the flag: a flagged pass is not later than the plain passes
    // that followed it (taking it for the highest reused them, and the next region
    // read again counted an earlier region's acknowledgements as its own).
    let number = |pass: u64| pass & !FIRST_READ_IN_DOUBT;
    let highest = spooled
        .into_iter()
        .map(number)
        .fold(number(replay_pass), u64::max);
    next_pass(highest) | FIRST_READ_IN_DOUBT
}

/// One spooled row in doubt: its spool sequence number and content identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doubt {
    pub seq: u64,
    pub identity: u64,
    /// The replay pass that read it again after the file shrank or was rewritten (0:
    /// none): it may be the very row the ring remembers acknowledging.
    pub replay: u64,
}

/// The distinct identities to ask `checkRow` about, in first-seen order.
pub fn distinct(doubts: &[Doubt]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    doubts
        .iter()
        .filter(|d| seen.insert(d.identity))
        .map(|d| d.identity)
        .collect()
}

/// Whether an in-doubt row can be stored at all: the watermark is the latest time the
/// server holds, so a row after it is certainly absent and needs no `checkRow` (after a
/// cut mid-request this spares a round trip per row when the batch never arrived).
pub fn may_be_stored(time: i64, watermark: Option<i64>) -> bool {
    watermark.is_some_and(|w| time <= w)
}

/// Splits the in-doubt rows into those the server already holds (to drop from the spool
/// as acknowledged) and those it lacks (to send). `server_count` has the `checkRow`
/// answer for every distinct identity; `ring` the acknowledged copies still remembered.
///
/// An identity with a replayed row among its doubts (all of one pass: the uploader never
/// mixes passes in one resync) is reduced only by the rows of the same pass acknowledged
/// before it (earlier lines of that pass over the file, stored or judged stored): any
/// other acknowledged copy may be that very row, shipped before a power cut shortened
/// the file or read by an earlier pass, and subtracting it would send it a second time.
pub fn decide(
    doubts: &[Doubt],
    server_count: &HashMap<u64, u64>,
    ring: &AckedRing,
) -> (Vec<u64>, Vec<u64>) {
    let mut present_left: HashMap<u64, u64> = HashMap::new();
    for id in distinct(doubts) {
        let stored = server_count.get(&id).copied().unwrap_or(0);
        let replay = doubts.iter().find(|d| d.identity == id && d.replay != 0);
        let acked = match replay {
            Some(d) if !is_first_read(d.replay) => ring.count_replayed(id, d.replay),
            _ => ring.count(id),
        };
        present_left.insert(id, stored.saturating_sub(acked));
    }
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for d in doubts {
        let left = present_left.get_mut(&d.identity).expect("counted above");
        if *left > 0 {
            *left -= 1;
            present.push(d.seq);
        } else {
            absent.push(d.seq);
        }
    }
    (present, absent)
}

/// Where a row read during a partition takeover goes, given the server's watermark.
#[derive(Debug, PartialEq, Eq)]
pub enum TakeoverClass {
    /// Below the watermark: the previous loader stored it.
    AlreadyStored,
    /// At the watermark: may or may not be stored; resolved with checkRow.
    InDoubt,
    /// Above the watermark: new.
    New,
}

pub fn takeover_class(time: i64, watermark: i64) -> TakeoverClass {
    match time.cmp(&watermark) {
        std::cmp::Ordering::Less => TakeoverClass::AlreadyStored,
        std::cmp::Ordering::Equal => TakeoverClass::InDoubt,
        std::cmp::Ordering::Greater => TakeoverClass::New,
    }
}

/// What to do with one in-doubt row of a target.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Judgement {
    /// The server holds it: drop it as acknowledged.
    Stored,
    /// The server cannot hold it: send it.
    Send,
    /// Ask with checkRow.
    Ask,
}

/// A row read from the takeover region before the target's watermark was known is
/// judged against that recorded watermark (`takeover`; None: the partition was empty),
/// never against the live one, which our own uploads have raised since. A row whose
/// batch's fate is unknown can only be stored if it is not newer than the live watermark.
/// A row read again (`replayed`) is new to the earlier loader but may be one this
/// journal already sent: above the recorded watermark it is judged like any row in
/// doubt (found by the simulator: a file rewritten while the takeover was pending).
pub fn judge(
    time: i64,
    before_takeover: bool,
    takeover: Option<i64>,
    live: Option<i64>,
    replayed: bool,
) -> Judgement {
    if before_takeover {
        match takeover.map(|w| takeover_class(time, w)) {
            None | Some(TakeoverClass::New) if replayed => {}
            None | Some(TakeoverClass::New) => return Judgement::Send,
            Some(TakeoverClass::AlreadyStored) => return Judgement::Stored,
            Some(TakeoverClass::InDoubt) => return Judgement::Ask,
        }
    }
    if may_be_stored(time, live) {
        Judgement::Ask
    } else {
        Judgement::Send
    }
}

#[cfg(test)]
mod tests;
