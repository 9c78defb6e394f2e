//! Which of queue_log's generations are still to be read, and in which order: decided
//! from their names and what the files hold (their first row, how far each was read),
//! never from modification times alone (a Pi without a real-time clock dates files in
//! 1970, or in the future after a bad NTP answer).
//!
//! A generation is known by its content, not its inode: `gzip` gives `queue_log.2.gz` a
//! new inode, copytruncate a new file with the old content. What identifies one is a
//! hash of its first line (see [`Gen::head`]), and how far it was read is kept with that
//! hash ([`Finished`]). A generation read to some length that is longer now grew after
//! it was left (a writer still holding a renamed file): its new rows are read too.

use crate::journal::FileId;
use std::cmp::Ordering;

/// Where a file's name places it: `queue_log` itself, `queue_log.3` (logrotate's
/// numbers: higher is older), `queue_log-20261123` / `queue_log_1700000000` (dated:
/// greater is newer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rank {
    Live,
    Numbered(u64),
    /// The date's digits, compared by length and then text.
    Dated(String),
}

/// What the reader knows of one file in queue_log's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gen {
    pub id: FileId,
    pub rank: Rank,
    /// Compressed: it can no longer grow, and is read through an inflate.
    pub gz: bool,
    /// Its length in bytes of queue_log text (for `.gz`: from the gzip trailer).
    pub len: u64,
    /// Hash of its first line (at most [`HEAD_MAX`] bytes): stable under appends once
    /// the first line is whole, and across gzip, renames and copies.
    pub head: u64,
    /// The time of its first row: orders generations by what they hold.
    pub first_time: Option<i64>,
    pub mtime_ns: i64,
}

/// A generation read up to `len` and left (finished, or set aside for another one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub id: FileId,
    pub head: u64,
    /// How far it was read (`u64::MAX`: to its end, in a journal written before lengths
    /// were kept).
    pub len: u64,
    /// Hash of the bytes just before `len` (at most 256; 0: not known): a file that no
    /// longer holds them there (a power cut took back its tail, and the writer went on)
    /// is read again, in doubt.
    pub fp: u64,
}

pub const HEAD_MAX: usize = 64;

/// The suffix after `queue_log` in a rotated file's name, if it is one: `.1`, `.2.gz`,
/// `-20261123`, `.2026-11-23`, `_1700000000`. Not `.bak` or `.old`: copies an admin made
/// must not be uploaded twice.
pub fn rank_of(suffix: &str) -> Option<(Rank, bool)> {
    let (suffix, gz) = match suffix.strip_suffix(".gz") {
        Some(s) => (s, true),
        None => (suffix, false),
    };
    let mut chars = suffix.chars();
    let rotation = matches!(chars.next(), Some('.' | '-' | '_'))
        && suffix.bytes().any(|b| b.is_ascii_digit())
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    if !rotation {
        return None;
    }
    let digits: String = suffix.chars().filter(char::is_ascii_digit).collect();
    // logrotate's numbers are small; anything long is a date or a timestamp.
    let rank = match digits.parse::<u64>() {
        Ok(n) if digits.len() <= 4 && suffix.starts_with('.') => Rank::Numbered(n),
        _ => Rank::Dated(digits),
    };
    Some((rank, gz))
}

/// Which way numbered names run. logrotate and Asterisk's default rotation give the
/// highest number to the oldest file; Asterisk's `rotatestrategy = sequential` to the
/// newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbering {
    HighestOldest,
    HighestNewest,
}

/// Reads the numbering from what the files hold: each two neighbouring numbers whose
/// first rows differ in time vote. Sequential numbering is taken on two votes or more
/// and a majority: one vote cannot tell it from a clock that stepped back between two
/// rotations, and logrotate's way, by far the most common, is the default.
pub fn numbering(gens: &[Gen]) -> Numbering {
    let mut numbered: Vec<(u64, i64)> = gens
        .iter()
        .filter_map(|g| match (&g.rank, g.first_time) {
            (Rank::Numbered(n), Some(t)) => Some((*n, t)),
            _ => None,
        })
        .collect();
    numbered.sort_unstable();
    let (mut oldest_first, mut newest_first) = (0, 0);
    for pair in numbered.windows(2) {
        let ((_, older_if_oldest), (_, newer_if_oldest)) = (pair[1], pair[0]);
        match older_if_oldest.cmp(&newer_if_oldest) {
            Ordering::Less => oldest_first += 1,
            Ordering::Greater => newest_first += 1,
            Ordering::Equal => {}
        }
    }
    if newest_first >= 2 && newest_first > oldest_first {
        Numbering::HighestNewest
    } else {
        Numbering::HighestOldest
    }
}

/// Older first. Names decide (numbers, the way `numbering` says they run; dates): they
/// are given at rotation and no clock misorders them. Then what the files hold (the
/// first row's time); then modification times; the live file last. A total order (a
/// key), so that no mix of names and times can make sorting inconsistent: numbered
/// names come before dated ones (a directory mixing both schemes is not ordered across
/// them).
pub fn older_first(a: &Gen, b: &Gen, numbering: Numbering) -> Ordering {
    order_key(a, numbering).cmp(&order_key(b, numbering))
}

type OrderKey<'a> = (u8, i128, usize, &'a str, i64, i64, u64);

fn order_key(g: &Gen, numbering: Numbering) -> OrderKey<'_> {
    let (family, number, date) = match (&g.rank, numbering) {
        (Rank::Numbered(n), Numbering::HighestOldest) => (0, -i128::from(*n), ""),
        (Rank::Numbered(n), Numbering::HighestNewest) => (0, i128::from(*n), ""),
        (Rank::Dated(d), _) => (1, 0, d.as_str()),
        (Rank::Live, _) => (2, 0, ""),
    };
    (
        family,
        number,
        date.len(),
        date,
        g.first_time.unwrap_or(i64::MIN),
        g.mtime_ns,
        g.head,
    )
}

/// One file to read next, from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToRead {
    /// Index into the generations given.
    pub gen: usize,
    pub offset: u64,
    /// Read to `offset` before and left; it grew since (a writer still holding it).
    pub grew: bool,
    /// Its rows may have been shipped (the position was lost, or the file no longer
    /// holds what was read): each is checked with the server.
    pub in_doubt: bool,
}

/// How the reader stands towards generations it has no record of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// A first start (or a journal from before generations were recorded): generations
    /// already rotated away are history, not read.
    Nothing,
    /// The record of what was read: generations newer than the newest one read are
    /// unread, older ones were read (or predate qlship). With none of those left,
    /// every generation not recorded is newer.
    Finished,
    /// The file being read is nowhere and no generation read is left: every rotated
    /// generation may be unread (read them, rows in doubt).
    LostTrack,
}

/// The generations to read, oldest first, ending with the live file when it has
/// anything to read. `gens` is what the directory holds now; `finished` what was read.
///
/// A generation read before and grown since is read from where it was left. One never
/// read is read from its start when it is newer than the newest generation read (the
/// anchor); older ones were read before the record began, or are from before qlship.
/// Two files with one content (`queue_log.1` being gzipped next to `queue_log.1.gz`)
/// are one generation: only the uncompressed is read.
///
/// `holds(gen, record)`: whether the generation still holds, just before the record's
/// length, the bytes read there (the shell reads them). One that does not is read again
/// from its start, in doubt. Records are by first line and file: a generation left is
/// recorded beside another with the same first line, never over it.
pub fn to_read(
    gens: &[Gen],
    finished: &[Finished],
    known: Known,
    holds: impl Fn(&Gen, &Finished) -> bool,
) -> Vec<ToRead> {
    let mut order: Vec<usize> = (0..gens.len()).collect();
    let numbering = numbering(gens);
    order.sort_by(|&a, &b| older_first(&gens[a], &gens[b], numbering));
    let rotated_twin = |i: usize| {
        let g = &gens[i];
        g.gz && g.rank != Rank::Live
            && gens
                .iter()
                .any(|o| !o.gz && o.rank != Rank::Live && o.head == g.head && o.len > 0)
    };
    order.retain(|&i| !rotated_twin(i));
    // Two generations may begin with the same line (Asterisk's CONFIGRELOAD line, two
    // rotations in one second), and copies share their original's: a record is the one
    // of the same file, else the furthest one whose bytes the file holds where it was
    // left (a copy, a compressed twin), else any (it does not hold it: in doubt).
    let record = |g: &Gen| {
        let same = || finished.iter().filter(|f| f.head == g.head && g.len > 0);
        same()
            .find(|f| f.id == g.id)
            .or_else(|| same().filter(|f| holds(g, f)).max_by_key(|f| f.len))
            .or_else(|| same().next())
    };
    let anchor = order
        .iter()
        .rposition(|&i| gens[i].rank != Rank::Live && record(&gens[i]).is_some());
    let mut out = Vec::new();
    for (at, &i) in order.iter().enumerate() {
        let g = &gens[i];
        let live = g.rank == Rank::Live;
        match record(g) {
            Some(f) if f.len != u64::MAX && !holds(g, f) => out.push(ToRead {
                gen: i,
                offset: 0,
                grew: false,
                in_doubt: true,
            }),
            Some(f) if f.len == u64::MAX || g.len <= f.len => {
                if live {
                    // Set aside with nothing new: still the file to go on with.
                    out.push(ToRead {
                        gen: i,
                        offset: f.len.min(g.len),
                        grew: false,
                        in_doubt: false,
                    });
                }
            }
            Some(f) => out.push(ToRead {
                gen: i,
                offset: f.len,
                grew: !live,
                in_doubt: false,
            }),
            None => {
                // With no generation read left beside them, the ones not recorded are
                // newer than any read: logrotate deletes the oldest first, and a new
                // journal records those it found (history). Unless the position was
                // lost: then nothing says whether they were read.
                let (newer, in_doubt) = match (anchor, known) {
                    _ if live => (true, false),
                    (Some(a), _) => (at > a, false),
                    (None, Known::Nothing) => (false, false),
                    (None, Known::Finished) => (true, false),
                    (None, Known::LostTrack) => (true, true),
                };
                // An empty rotated file has nothing to read (and cannot be recorded).
                if newer && (live || g.len > 0) {
                    out.push(ToRead {
                        gen: i,
                        offset: 0,
                        grew: false,
                        in_doubt,
                    });
                }
            }
        }
    }
    out
}

/// The first line of `bytes` (a file's start), at most [`HEAD_MAX`] bytes, hashed: the
/// generation's identity. Also the time of its first row, when it has one.
pub fn head_of(bytes: &[u8]) -> (u64, Option<i64>) {
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(n) => &bytes[..n.min(HEAD_MAX)],
        None => &bytes[..bytes.len().min(HEAD_MAX)],
    };
    let time = line
        .split(|&b| b == b'|')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<i64>().ok());
    (crate::tail::fnv(line), time)
}

#[cfg(test)]
mod tests;
