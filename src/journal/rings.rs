//! Each target's ring of acknowledged rows on disk: a base record (`r` + slot), rewritten
//! only now and then, and after it the entries each commit acknowledged, in small delta
//! records (`R`, slot, number).
//!
//! Why: the ring holds up to [`RING_CAP`] entries (about 37 KB encoded), and writing it
//! whole at every acknowledgement was most of what qlship wrote to flash. At 5 rows a
//! second each batch of a few rows rewrote some 25 KB; sled then wrote that again as it
//! cleaned its segments. A delta holds only the batch's own entries. The base is
//! rewritten, and the deltas dropped, once [`MAX_DELTAS`] deltas or [`RING_CAP`] entries
//! have piled up since it was, which bounds both the records read at open and the
//! entries kept on disk (at most the ring and one cap more).
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

/// Reads one slot's ring: its base, then each delta in order, each pruned as its commit
/// was.
pub(super) fn load(db: &sled::Db, slot: usize) -> Result<(AckedRing, Deltas), LoadError> {
    let mut ring = match db.get(ring_key(slot)).map_err(LoadError::Sled)? {
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

/// Writes into `ops` what makes the slot's ring on disk `ring` again after `added`
/// were added to it (and it was pruned): a delta of them, or now and then a new base.
pub(super) fn store(
    ops: &mut sled::Batch,
    slot: usize,
    deltas: &mut Deltas,
    ring: &AckedRing,
    added: &AckedRing,
) {
    if added.is_empty() {
        return;
    }
    if deltas.records < MAX_DELTAS && deltas.entries + added.len() <= RING_CAP {
        ops.insert(&delta_key(slot, deltas.records)[..], added.encode());
        deltas.records += 1;
        deltas.entries += added.len();
        return;
    }
    ops.insert(ring_key(slot), ring.encode());
    drop_deltas(ops, slot, deltas);
}

/// Removes the slot's ring from disk (the slot was freed).
pub(super) fn remove(ops: &mut sled::Batch, slot: usize, deltas: &mut Deltas) {
    ops.remove(ring_key(slot));
    drop_deltas(ops, slot, deltas);
}

fn drop_deltas(ops: &mut sled::Batch, slot: usize, deltas: &mut Deltas) {
    for n in 0..deltas.records {
        ops.remove(&delta_key(slot, n)[..]);
    }
    *deltas = Deltas::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    fn ring_of(range: std::ops::Range<u64>) -> AckedRing {
        let mut r = AckedRing::default();
        for i in range {
            r.add(1_000, i);
        }
        r
    }

    /// Applies one commit the way `Journal::commit` does: add, prune, store.
    fn commit(db: &sled::Db, ring: &mut AckedRing, deltas: &mut Deltas, added: AckedRing) {
        ring.append(&added);
        ring.prune();
        let mut ops = sled::Batch::default();
        store(&mut ops, 3, deltas, ring, &added);
        db.apply_batch(ops).unwrap();
    }

    #[test]
    fn what_comes_back_is_the_ring_and_each_commit_writes_only_its_entries() {
        let (_dir, db) = db();
        let (mut ring, mut deltas) = (AckedRing::default(), Deltas::default());
        for batch in 0..200u64 {
            commit(
                &db,
                &mut ring,
                &mut deltas,
                ring_of(batch * 5..batch * 5 + 5),
            );
            let (back, on_disk) = load(&db, 3).unwrap();
            assert_eq!(back, ring, "after batch {batch}");
            assert_eq!(on_disk, deltas);
            assert!(deltas.records <= MAX_DELTAS);
        }
        // 200 commits of 5 entries, in cycles of 64 deltas and one new base: the base
        // last written at commit 195 holds the 975 entries then, 5 deltas the rest.
        let base = db.get(ring_key(3)).unwrap().unwrap();
        assert_eq!(AckedRing::decode(&base).unwrap().len(), 975);
        assert_eq!((deltas.records, deltas.entries), (5, 25));
    }

    #[test]
    fn full_batches_rewrite_the_base_before_the_deltas_pass_a_ring() {
        let (_dir, db) = db();
        let (mut ring, mut deltas) = (AckedRing::default(), Deltas::default());
        for batch in 0..20u64 {
            commit(
                &db,
                &mut ring,
                &mut deltas,
                ring_of(batch * 500..batch * 500 + 500),
            );
            assert!(deltas.entries <= RING_CAP);
            assert_eq!(load(&db, 3).unwrap().0, ring);
        }
        // Other slots are untouched; a removed ring is gone with its deltas.
        assert_eq!(load(&db, 4).unwrap().0, AckedRing::default());
        let mut ops = sled::Batch::default();
        remove(&mut ops, 3, &mut deltas);
        db.apply_batch(ops).unwrap();
        assert_eq!(
            load(&db, 3).unwrap(),
            (AckedRing::default(), Deltas::default())
        );
        assert_eq!(db.len(), 0);
    }

    /// Rows whose times jump back and forth (clock steps, a catch-up of other days) and
    /// commits of up to 120 rows, past the cap: the ring in memory prunes at every
    /// commit, and an entry it pruned can be back inside the window later. Replaying
    /// the deltas and pruning once kept such entries and, at the cap, dropped as many
    /// of the oldest entries the ring in memory still held (seed 3: 111 of 2,048), each
    /// a twin's acknowledgement a row in doubt could be taken for stored without.
    #[test]
    fn what_comes_back_is_the_ring_even_when_times_jump_past_the_cap() {
        for seed in 0..40u64 {
            let (_dir, db) = db();
            let (mut ring, mut deltas) = (AckedRing::default(), Deltas::default());
            let mut x = seed;
            let mut rnd = |n: u64| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) % n
            };
            let (mut time, mut identity) = (1_000_000i64, 0u64);
            for commit_no in 0..120 {
                if rnd(4) == 0 {
                    time += [-400, 400, -200, 200, 1000, -1000][rnd(6) as usize];
                }
                let mut added = AckedRing::default();
                for _ in 0..1 + rnd(120) {
                    added.add(time + rnd(3) as i64, identity);
                    identity += 1;
                }
                commit(&db, &mut ring, &mut deltas, added);
                let back = load(&db, 3).unwrap().0;
                assert!(back == ring, "seed {seed}, commit {commit_no}");
            }
        }
    }

    #[test]
    fn a_damaged_delta_is_an_error_not_a_shorter_ring() {
        let (_dir, db) = db();
        db.insert(delta_key(0, 0), &[0xff, 0xff][..]).unwrap();
        assert!(matches!(load(&db, 0), Err(LoadError::Undecodable(_))));
    }
}
