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

/// Identities of recently acknowledged rows, with their times.
///
/// Only rows within [`RING_WINDOW_SECS`] of queue_log time of the last one acknowledged,
/// either side, and at most [`RING_CAP`] of them, are kept: identical rows share their
/// timestamp, and rows in doubt follow the acknowledged ones in the file, so rows of
/// other times cannot be confused with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckedRing {
    entries: VecDeque<(i64, u64)>,
}

pub const RING_WINDOW_SECS: i64 = 300;
pub const RING_CAP: usize = 2048;

impl AckedRing {
    pub fn add(&mut self, time: i64, identity: u64) {
        self.entries.push_back((time, identity));
    }

    /// Forgets entries outside the window and beyond the cap. The window is around the
    /// last row acknowledged, not the greatest time seen: after a Pi without an RTC
    /// boots a year in the past, its new rows are a year "older" than the ones before,
    /// and a window at the greatest time forgot every one of them at once, so a copy in
    /// doubt was taken for stored and lost (found by the simulator, clock steps).
    pub fn prune(&mut self) {
        let Some(&(last, _)) = self.entries.back() else {
            return;
        };
        self.entries
            .retain(|&(t, _)| t.abs_diff(last) <= RING_WINDOW_SECS.unsigned_abs());
        while self.entries.len() > RING_CAP {
            self.entries.pop_front();
        }
    }

    pub fn count(&self, identity: u64) -> u64 {
        self.entries.iter().filter(|e| e.1 == identity).count() as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.entries.len() * 12);
        put_varint(&mut out, self.entries.len() as u64);
        for &(t, id) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut cur = Cursor { bytes, at: 0 };
        let n = cur.varint()?;
        let mut entries = VecDeque::new();
        for _ in 0..n {
            let t = cur.u64()? as i64;
            let id = cur.u64()?;
            entries.push_back((t, id));
        }
        Ok(Self { entries })
    }
}

/// One spooled row in doubt: its spool sequence number and content identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doubt {
    pub seq: u64,
    pub identity: u64,
    /// Read again after the file shrank or was rewritten: it may be the very row the
    /// ring remembers acknowledging.
    pub replayed: bool,
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
/// An identity with a replayed row among its doubts is not reduced by the ring: the
/// acknowledged copy the ring remembers may be that same row, read again after a power
/// cut shortened the file; subtracting it would send the row a second time.
pub fn decide(
    doubts: &[Doubt],
    server_count: &HashMap<u64, u64>,
    ring: &AckedRing,
) -> (Vec<u64>, Vec<u64>) {
    let mut present_left: HashMap<u64, u64> = HashMap::new();
    for id in distinct(doubts) {
        let stored = server_count.get(&id).copied().unwrap_or(0);
        let replayed = doubts.iter().any(|d| d.identity == id && d.replayed);
        let acked = if replayed { 0 } else { ring.count(id) };
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
pub fn judge(
    time: i64,
    before_takeover: bool,
    takeover: Option<i64>,
    live: Option<i64>,
) -> Judgement {
    if before_takeover {
        return match takeover.map(|w| takeover_class(time, w)) {
            None | Some(TakeoverClass::New) => Judgement::Send,
            Some(TakeoverClass::AlreadyStored) => Judgement::Stored,
            Some(TakeoverClass::InDoubt) => Judgement::Ask,
        };
    }
    if may_be_stored(time, live) {
        Judgement::Ask
    } else {
        Judgement::Send
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn takeover_rows_use_the_recorded_watermark_not_the_live_one() {
        // Our own uploads raised the live watermark to 20; a row of the region at 15
        // was never stored by the earlier loader (its watermark was 10).
        assert_eq!(judge(15, true, Some(10), Some(20)), Judgement::Send);
        assert_eq!(judge(9, true, Some(10), Some(20)), Judgement::Stored);
        assert_eq!(judge(10, true, Some(10), Some(20)), Judgement::Ask);
        assert_eq!(judge(9, true, None, Some(20)), Judgement::Send);
        assert_eq!(judge(15, false, Some(10), Some(20)), Judgement::Ask);
        assert_eq!(judge(21, false, Some(10), Some(20)), Judgement::Send);
        assert_eq!(judge(1, false, Some(10), None), Judgement::Send);
    }

    use super::*;

    #[test]
    fn only_rows_up_to_the_watermark_may_be_stored() {
        assert!(!may_be_stored(10, None), "an empty partition holds nothing");
        assert!(may_be_stored(9, Some(10)));
        assert!(may_be_stored(10, Some(10)));
        assert!(!may_be_stored(11, Some(10)));
    }

    fn doubts(ids: &[u64]) -> Vec<Doubt> {
        ids.iter()
            .enumerate()
            .map(|(i, &identity)| Doubt {
                seq: 10 + i as u64,
                identity,
                replayed: false,
            })
            .collect()
    }

    fn counts(pairs: &[(u64, u64)]) -> HashMap<u64, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_batch_that_landed_is_all_present() {
        let d = doubts(&[1, 2, 3]);
        let (present, absent) = decide(
            &d,
            &counts(&[(1, 1), (2, 1), (3, 1)]),
            &AckedRing::default(),
        );
        assert_eq!(present, vec![10, 11, 12]);
        assert!(absent.is_empty());
    }

    #[test]
    fn a_batch_that_never_arrived_is_all_absent() {
        let d = doubts(&[1, 2, 3]);
        let (present, absent) = decide(&d, &counts(&[]), &AckedRing::default());
        assert!(present.is_empty());
        assert_eq!(absent, vec![10, 11, 12]);
    }

    #[test]
    fn identical_rows_are_counted_not_merged() {
        // Two identical rows in doubt; the server holds one copy from this batch.
        let d = doubts(&[7, 7]);
        let (present, absent) = decide(&d, &counts(&[(7, 1)]), &AckedRing::default());
        assert_eq!((present, absent), (vec![10], vec![11]));
    }

    #[test]
    fn acknowledged_twins_are_subtracted_first() {
        // One copy of row 7 was acknowledged in the previous batch; the in-doubt batch
        // holds another copy. Server count 1 = only the old copy: the new one is absent.
        let mut ring = AckedRing::default();
        ring.add(100, 7);
        let d = doubts(&[7]);
        let (present, absent) = decide(&d, &counts(&[(7, 1)]), &ring);
        assert_eq!((present, absent), (vec![], vec![10]));
        // Server count 2: the in-doubt copy landed too.
        let (present, absent) = decide(&d, &counts(&[(7, 2)]), &ring);
        assert_eq!((present, absent), (vec![10], vec![]));
    }

    #[test]
    fn takeover_consumes_the_previous_loaders_copies_across_rounds() {
        // The file holds row 5 three times at the watermark; the old loader stored two.
        let mut ring = AckedRing::default();
        let first = doubts(&[5]);
        let (present, _) = decide(&first, &counts(&[(5, 2)]), &ring);
        assert_eq!(present, vec![10]);
        ring.add(1, 5);
        let rest = doubts(&[5, 5]);
        let (present, absent) = decide(&rest, &counts(&[(5, 2)]), &ring);
        assert_eq!((present, absent), (vec![10], vec![11]));
    }

    #[test]
    fn ring_prunes_by_window_and_cap_and_round_trips() {
        let mut ring = AckedRing::default();
        ring.add(0, 1);
        ring.add(RING_WINDOW_SECS + 10, 2);
        ring.prune();
        assert_eq!(ring.count(1), 0);
        assert_eq!(ring.count(2), 1);
        // The clock stepped a year back: the rows acknowledged since are kept, the ones
        // from before the step are the ones forgotten.
        ring.add(10 - 365 * 86_400, 3);
        ring.add(11 - 365 * 86_400, 4);
        ring.prune();
        assert_eq!((ring.count(2), ring.count(3), ring.count(4)), (0, 1, 1));
        for i in 0..(RING_CAP as u64 + 5) {
            ring.add(RING_WINDOW_SECS + 10, i);
        }
        ring.prune();
        assert_eq!(ring.len(), RING_CAP);
        assert_eq!(AckedRing::decode(&ring.encode()).unwrap(), ring);
    }

    #[test]
    fn takeover_classes() {
        assert_eq!(takeover_class(9, 10), TakeoverClass::AlreadyStored);
        assert_eq!(takeover_class(10, 10), TakeoverClass::InDoubt);
        assert_eq!(takeover_class(11, 10), TakeoverClass::New);
    }
}
