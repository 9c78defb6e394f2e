//! The spool's chunk encoding: rows with their sequence numbers and per-target masks,
//! scanned without decoding the rows they do not return.

use super::{Entry, JournalError, Meta};
use crate::row::{put_varint, Cursor, DecodeError, Row};

/// The spool is a sequence of chunks, one per read step (up to a few hundred rows), each
/// one sled value: one key per row made sled ~5x slower and its log several times the
/// size of the data. A chunk is keyed by the sequence number of its first row when it
/// was written; each row inside carries its own sequence number and masks, so rows
/// acknowledged out of a chunk's middle (resync, other targets) are removed by rewriting
/// the chunk.
pub(super) const CHUNK_VERSION: u8 = 3;
/// Version 2: three masks (no replay pass).
const CHUNK_V2: u8 = 2;
/// Version 1: one target, a flags byte (1 = in doubt).
const CHUNK_V1: u8 = 1;

pub(super) fn spool_key(seq: u64) -> [u8; 9] {
    let mut k = [b's'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn ring_key(slot: usize) -> Vec<u8> {
    // Slot 0 keeps the key of journals from before targets existed.
    if slot == 0 {
        b"r".to_vec()
    } else {
        vec![b'r', slot as u8]
    }
}

pub(super) fn encode_chunk<'a>(rows: impl Iterator<Item = (u64, [u64; 4], &'a Row)>) -> Vec<u8> {
    let mut v = vec![CHUNK_VERSION];
    let mut row_bytes = Vec::with_capacity(160);
    for (seq, masks, row) in rows {
        row_bytes.clear();
        row.encode_into(&mut row_bytes);
        put_chunk_row(&mut v, seq, masks, &row_bytes);
    }
    v
}

pub(super) fn put_chunk_row(v: &mut Vec<u8>, seq: u64, masks: [u64; 4], row_bytes: &[u8]) {
    put_varint(v, seq);
    for m in masks {
        put_varint(v, m);
    }
    put_varint(v, row_bytes.len() as u64);
    v.extend_from_slice(row_bytes);
}

/// A spooled row's sequence number and masks, its row still encoded in the chunk:
/// scans skip the rows they do not return, and rewrites copy them, without decoding
/// (decoding a row is ten allocations; this was most of the catch-up's malloc time).
pub(super) struct RawEntry {
    pub(super) seq: u64,
    pub(super) want: u64,
    pub(super) doubt: u64,
    pub(super) takeover: u64,
    pub(super) replay: u64,
    pub(super) row: std::ops::Range<usize>,
}

impl RawEntry {
    pub(super) fn decode(&self, chunk: u64, value: &[u8]) -> Result<Entry, JournalError> {
        let row = Row::decode(&value[self.row.clone()]).map_err(|e| bad_chunk(chunk, e))?;
        Ok(Entry {
            seq: self.seq,
            want: self.want,
            doubt: self.doubt,
            takeover: self.takeover,
            replay: self.replay,
            row,
            chunk,
        })
    }
}

#[cfg(test)]
pub(super) fn decode_chunk(chunk: u64, value: &[u8]) -> Result<Vec<Entry>, JournalError> {
    scan_chunk(chunk, value)?
        .iter()
        .map(|e| e.decode(chunk, value))
        .collect()
}

pub(super) fn bad_chunk(chunk: u64, e: DecodeError) -> JournalError {
    JournalError::Corrupt(format!("spool chunk {chunk}: {e}"))
}

pub(super) fn scan_chunk(chunk: u64, value: &[u8]) -> Result<Vec<RawEntry>, JournalError> {
    let bad = |e| bad_chunk(chunk, e);
    let mut c = Cursor {
        bytes: value,
        at: 0,
    };
    let version = c.u8().map_err(bad)?;
    if ![CHUNK_VERSION, CHUNK_V2, CHUNK_V1].contains(&version) {
        return Err(JournalError::Corrupt(format!(
            "spool chunk {chunk}: unknown version"
        )));
    }
    let mut out = Vec::new();
    while c.at < value.len() {
        let seq = c.varint().map_err(bad)?;
        let (want, doubt, takeover, replay) = if version == CHUNK_V1 {
            (1, u64::from(c.u8().map_err(bad)? & 1), 0, 0)
        } else {
            let want = c.varint().map_err(bad)?;
            let doubt = c.varint().map_err(bad)?;
            let takeover = c.varint().map_err(bad)?;
            let replay = if version == CHUNK_V2 {
                0
            } else {
                c.varint().map_err(bad)?
            };
            (want, doubt, takeover, replay)
        };
        let len =
            usize::try_from(c.varint().map_err(bad)?).map_err(|_| bad(DecodeError::Truncated))?;
        let start = c.at;
        c.take(len).map_err(bad)?;
        out.push(RawEntry {
            seq,
            want,
            doubt,
            takeover,
            replay,
            row: start..c.at,
        });
    }
    Ok(out)
}

/// Rewrites spool chunk `chunk` (its old value `old`, scanned into `rows`) with each
/// row's masks replaced by `masks(row)`, dropping rows no target wants any more (the
/// whole chunk when none is left), and keeps the spool counters in step.
pub(super) fn rewrite_chunk(
    m: &mut Meta,
    ops: &mut sled::Batch,
    chunk: u64,
    old: &[u8],
    rows: &[RawEntry],
    masks: impl Fn(&RawEntry) -> [u64; 4],
) {
    let mut value = vec![CHUNK_VERSION];
    let mut kept = 0;
    for e in rows {
        let new = masks(e);
        if new[0] != 0 {
            put_chunk_row(&mut value, e.seq, new, &old[e.row.clone()]);
            kept += 1;
        }
    }
    let key = spool_key(chunk);
    m.spool_rows = m.spool_rows.saturating_sub((rows.len() - kept) as u64);
    m.spool_bytes = m.spool_bytes.saturating_sub((old.len() + 9) as u64);
    if kept == 0 {
        ops.remove(&key[..]);
    } else {
        m.spool_bytes += (value.len() + 9) as u64;
        ops.insert(&key[..], value);
    }
}

pub(super) fn chunk_key_of(key: &[u8]) -> Result<u64, JournalError> {
    key.get(1..9)
        .and_then(|k| k.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| JournalError::Corrupt("spool key".into()))
}
