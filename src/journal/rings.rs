//! Each target's ring of acknowledged rows on disk: a base, rewritten only now and then,
//! and after it the entries each commit acknowledged, in small delta records (`R`, slot,
//! number).
//!
//! Why: the ring holds up to [`RING_CAP`] entries (about 37 KB encoded), and writing it
//! whole at every acknowledgement was most of what qlship wrote to flash. At 5 rows a
//! second each batch of a few rows rewrote some 25 KB; sled then wrote that again as it
//! cleaned its segments. A delta holds only the batch's own entries. The base is
//! rewritten, and the deltas dropped, once [`MAX_DELTAS`] deltas or [`RING_CAP`] entries
//! have piled up since it was, which bounds both the records read at open and the
//! entries kept on disk (at most the ring and one cap more).
//!
//! The bases live in a tree of their own ([`BASES`]), not beside the meta record: sled
//! rewrites a leaf whole every few updates (10), and the meta is updated by every
//! commit, so a base sharing its leaf was written again every two seconds or so of a
//! trickle, up to 50 KB each time (3-4 KB a row once the ring was full). The meta names
//! each slot's current base by number (`TargetMeta::ring_base`). A new base is written
//! under the next number before the commit that names it, and the old one removed after
//! it: sled's log is one sequence for all its trees, so whatever prefix of it a crash
//! leaves, a surviving commit naming a base has that base, and a removed base is one no
//! surviving commit names. Number 0 is the main tree's `r` record (+ slot), where
//! journals from before kept their bases; it stays until their next base is written.
//!
//! What comes back after a crash is the base with each delta added and pruned in turn,
//! as the ring in memory was at each commit: the very ring it held. (Pruned once at the
//! end, entries it had pruned could come back inside the window and, at the cap, push
//! out older ones it still held: fewer twins told apart, a row in doubt taken for
//! stored.)

use super::chunk::ring_key;
use crate::resync::{AckedRing, RING_CAP};

const DELTA: u8 = b'R';
/// Deltas after which the next edit rewrites the base instead.
const MAX_DELTAS: u32 = 64;
/// The name of the tree of bases, keyed by slot and base number.
pub(super) const BASES: &[u8] = b"ring bases";

/// What of one slot's ring is on disk beyond its base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Deltas {
    /// Delta records written since the base (numbered from 0).
    records: u32,
    /// Entries in them.
    entries: usize,
}

fn delta_key(slot: usize, n: u32) -> [u8; 6] {
    let mut k = [DELTA, slot as u8, 0, 0, 0, 0];
    k[2..].copy_from_slice(&n.to_be_bytes());
    k
}

fn base_key(slot: usize, number: u64) -> [u8; 9] {
    let mut k = [slot as u8; 9];
    k[1..].copy_from_slice(&number.to_be_bytes());
    k
}

/// Reads one slot's ring: its base (number `base`, see [`BASES`]), then each delta in
/// order, each pruned as its commit was.
pub(super) fn load(
    db: &sled::Db,
    slot: usize,
    base: u64,
) -> Result<(AckedRing, Deltas), LoadError> {
    let stored = if base == 0 {
        db.get(ring_key(slot)).map_err(LoadError::Sled)?
    } else {
        // Opened only when a base is named: a journal from before never gets the tree
        // from reading it (salvage reads journals moved aside).
        let bases = db.open_tree(BASES).map_err(LoadError::Sled)?;
        let stored = bases.get(base_key(slot, base)).map_err(LoadError::Sled)?;
        Some(stored.ok_or(LoadError::Undecodable(format!(
            "its base {base} is missing"
        )))?)
    };
    let mut ring = match stored {
        None => AckedRing::default(),
        Some(v) => AckedRing::decode(&v).map_err(|e| LoadError::Undecodable(e.to_string()))?,
    };
    let mut deltas = Deltas::default();
    for kv in db.scan_prefix([DELTA, slot as u8]) {
        let (_, v) = kv.map_err(LoadError::Sled)?;
        let delta = AckedRing::decode(&v).map_err(|e| LoadError::Undecodable(e.to_string()))?;
        deltas.records += 1;
        deltas.entries += delta.len();
        // Pruned after each delta, as the ring in memory was after each commit: pruned
        // once, entries it had pruned came back inside the window and, at the cap,
        // pushed out older ones it still held.
        ring.append(&delta);
        ring.prune();
    }
    Ok((ring, deltas))
}

#[derive(Debug)]
pub(super) enum LoadError {
    Sled(sled::Error),
    Undecodable(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Sled(e) => write!(f, "{e}"),
            LoadError::Undecodable(e) => f.write_str(e),
        }
    }
}

/// A base no commit names any more once the batch is applied: removed after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Superseded {
    slot: usize,
    base: u64,
}

/// Makes the slot's ring on disk `ring` again after `added` were added to it (and it
/// was pruned): a delta of them in `ops`, or now and then a new base, written to `bases`
/// at once (before `ops` is applied) and named in `*base` (the slot's
/// `TargetMeta::ring_base`, which the same batch writes). Returns the base to remove
/// once `ops` is applied.
pub(super) fn store(
    bases: &sled::Tree,
    ops: &mut sled::Batch,
    slot: usize,
    base: &mut u64,
    deltas: &mut Deltas,
    ring: &AckedRing,
    added: &AckedRing,
) -> Result<Option<Superseded>, sled::Error> {
    if added.is_empty() {
        return Ok(None);
    }
    if deltas.records < MAX_DELTAS && deltas.entries + added.len() <= RING_CAP {
        ops.insert(&delta_key(slot, deltas.records)[..], added.encode());
        deltas.records += 1;
        deltas.entries += added.len();
        return Ok(None);
    }
    // Its number is named by no commit yet: a base left there by a write whose commit
    // was lost (or failed) is overwritten, never one a commit names.
    let next = *base + 1;
    write_base(bases, slot, next, &ring.encode())?;
    drop_deltas(ops, slot, deltas);
    Ok(replace_base(ops, slot, base, next))
}

/// Writes base `number` of the slot, to be named by a commit after it.
pub(super) fn write_base(
    bases: &sled::Tree,
    slot: usize,
    number: u64,
    encoded: &[u8],
) -> Result<(), sled::Error> {
    bases.insert(base_key(slot, number), encoded)?;
    Ok(())
}

/// Removes the slot's ring from disk (the slot was freed); `*base` is its base's number.
pub(super) fn remove(
    ops: &mut sled::Batch,
    slot: usize,
    base: &mut u64,
    deltas: &mut Deltas,
) -> Option<Superseded> {
    drop_deltas(ops, slot, deltas);
    replace_base(ops, slot, base, 0)
}

/// Names base `next` (0: none) in `*base`, and says what of the old one to remove: the
/// main tree's `r` record in the same batch, a base in the tree after it.
fn replace_base(
    ops: &mut sled::Batch,
    slot: usize,
    base: &mut u64,
    next: u64,
) -> Option<Superseded> {
    let old = std::mem::replace(base, next);
    if old == 0 {
        ops.remove(ring_key(slot));
        None
    } else {
        Some(Superseded { slot, base: old })
    }
}

/// Removes superseded bases, once the batch that stopped naming them is applied.
pub(super) fn drop_superseded(
    bases: &sled::Tree,
    superseded: &[Superseded],
) -> Result<(), sled::Error> {
    for s in superseded {
        bases.remove(base_key(s.slot, s.base))?;
    }
    Ok(())
}

/// Removes the bases no slot names (`named[slot]`), left by writes whose commit was
/// lost or failed, or by removals lost in a crash. Returns how many.
pub(super) fn drop_unnamed(bases: &sled::Tree, named: &[u64]) -> Result<usize, sled::Error> {
    let mut stale = Vec::new();
    for kv in bases.iter().keys() {
        let key = kv?;
        let named_here = match (key.first(), key.get(1..9)) {
            (Some(&slot), Some(number)) if key.len() == 9 => {
                let number = u64::from_be_bytes(number.try_into().expect("8 bytes"));
                number != 0 && named.get(usize::from(slot)) == Some(&number)
            }
            _ => false,
        };
        if !named_here {
            stale.push(key);
        }
    }
    for key in &stale {
        bases.remove(key)?;
    }
    Ok(stale.len())
}

fn drop_deltas(ops: &mut sled::Batch, slot: usize, deltas: &mut Deltas) {
    for n in 0..deltas.records {
        ops.remove(&delta_key(slot, n)[..]);
    }
    *deltas = Deltas::default();
}

#[cfg(test)]
mod tests;
