use super::*;
use crate::journal::tests::{pos, row};
use crate::journal::{Journal, Spooled};

fn db() -> (tempfile::TempDir, sled::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    (dir, db)
}

/// One slot's ring as `Journal::commit` keeps it: in memory, its deltas on disk and
/// the number of its base (the meta's `ring_base`, here held beside).
#[derive(Default)]
struct Slot {
    ring: AckedRing,
    deltas: Deltas,
    base: u64,
}

fn ring_of(range: std::ops::Range<u64>) -> AckedRing {
    let mut r = AckedRing::default();
    for i in range {
        r.add(1_000, i);
    }
    r
}

/// Applies one commit the way `Journal::commit` does: add, prune, store, apply,
/// drop the superseded base.
fn commit(db: &sled::Db, s: &mut Slot, added: AckedRing) {
    s.ring.append(&added);
    s.ring.prune();
    let bases = db.open_tree(BASES).unwrap();
    let mut ops = sled::Batch::default();
    let gone = store(
        &bases,
        &mut ops,
        3,
        &mut s.base,
        &mut s.deltas,
        &s.ring,
        &added,
    );
    db.apply_batch(ops).unwrap();
    drop_superseded(&bases, &Vec::from_iter(gone.unwrap())).unwrap();
}

#[test]
fn what_comes_back_is_the_ring_and_each_commit_writes_only_its_entries() {
    let (_dir, db) = db();
    let mut s = Slot::default();
    for batch in 0..200u64 {
        commit(&db, &mut s, ring_of(batch * 5..batch * 5 + 5));
        let (back, on_disk) = load(&db, 3, s.base).unwrap();
        assert_eq!(back, s.ring, "after batch {batch}");
        assert_eq!(on_disk, s.deltas);
        assert!(s.deltas.records <= MAX_DELTAS);
    }
    // 200 commits of 5 entries, in cycles of 64 deltas and one new base: the base
    // last written at commit 195 (the third) holds the 975 entries then, 5 deltas
    // the rest. Only that base is kept, in the tree of bases, none in the main tree.
    assert_eq!(s.base, 3);
    let bases = db.open_tree(BASES).unwrap();
    assert_eq!(bases.len(), 1);
    let base = bases.get(base_key(3, 3)).unwrap().unwrap();
    assert_eq!(AckedRing::decode(&base).unwrap().len(), 975);
    assert_eq!((s.deltas.records, s.deltas.entries), (5, 25));
    assert_eq!(db.get(ring_key(3)).unwrap(), None);
}

#[test]
fn full_batches_rewrite_the_base_before_the_deltas_pass_a_ring() {
    let (_dir, db) = db();
    let mut s = Slot::default();
    for batch in 0..20u64 {
        commit(&db, &mut s, ring_of(batch * 500..batch * 500 + 500));
        assert!(s.deltas.entries <= RING_CAP);
        assert_eq!(load(&db, 3, s.base).unwrap().0, s.ring);
    }
    // Other slots are untouched; a removed ring is gone with its deltas and base.
    assert_eq!(load(&db, 4, 0).unwrap().0, AckedRing::default());
    let bases = db.open_tree(BASES).unwrap();
    let mut ops = sled::Batch::default();
    let gone = remove(&mut ops, 3, &mut s.base, &mut s.deltas);
    db.apply_batch(ops).unwrap();
    drop_superseded(&bases, &Vec::from_iter(gone)).unwrap();
    assert_eq!(s.base, 0);
    assert_eq!(
        load(&db, 3, s.base).unwrap(),
        (AckedRing::default(), Deltas::default())
    );
    assert_eq!((db.len(), bases.len()), (0, 0));
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
        let mut s = Slot::default();
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
            commit(&db, &mut s, added);
            let back = load(&db, 3, s.base).unwrap().0;
            assert!(back == s.ring, "seed {seed}, commit {commit_no}");
        }
    }
}

#[test]
fn a_damaged_delta_is_an_error_not_a_shorter_ring() {
    let (_dir, db) = db();
    db.insert(delta_key(0, 0), &[0xff, 0xff][..]).unwrap();
    assert!(matches!(load(&db, 0, 0), Err(LoadError::Undecodable(_))));
}

#[test]
fn a_named_base_that_is_missing_is_an_error_not_an_empty_ring() {
    let (_dir, db) = db();
    let bases = db.open_tree(BASES).unwrap();
    write_base(&bases, 0, 1, &ring_of(0..3).encode()).unwrap();
    assert_eq!(load(&db, 0, 1).unwrap().0, ring_of(0..3));
    assert!(matches!(load(&db, 0, 2), Err(LoadError::Undecodable(_))));
}

/// A journal from before the tree of bases: its base is the `r` record. It is read,
/// and the next base goes to the tree, the `r` record removed in the same batch.
#[test]
fn a_base_in_the_main_tree_is_read_and_moved_by_the_next_rewrite() {
    let (_dir, db) = db();
    db.insert(ring_key(3), ring_of(0..100).encode()).unwrap();
    let (ring, deltas) = load(&db, 3, 0).unwrap();
    assert_eq!(ring, ring_of(0..100));
    let mut s = Slot {
        ring,
        deltas,
        base: 0,
    };
    for batch in 0..MAX_DELTAS as u64 {
        commit(&db, &mut s, ring_of(100 + batch..101 + batch));
        assert_eq!(db.get(ring_key(3)).unwrap().is_some(), s.base == 0);
        assert_eq!(load(&db, 3, s.base).unwrap().0, s.ring);
    }
    commit(&db, &mut s, ring_of(1000..1001));
    assert_eq!(s.base, 1);
    assert_eq!(db.get(ring_key(3)).unwrap(), None);
    assert_eq!(load(&db, 3, 1).unwrap().0, s.ring);
    assert_eq!(db.len(), 0, "deltas dropped");
}

/// A base written whose commit was lost, and one whose removal was: neither is
/// named, both go at the next open; the named one stays.
#[test]
fn bases_no_slot_names_are_dropped_and_named_ones_kept() {
    let (_dir, db) = db();
    let bases = db.open_tree(BASES).unwrap();
    for (slot, number) in [(0, 1), (0, 2), (1, 5), (2, 1), (2, 2)] {
        write_base(&bases, slot, number, &ring_of(0..1).encode()).unwrap();
    }
    assert_eq!(drop_unnamed(&bases, &[2, 0, 1]).unwrap(), 3);
    let left: Vec<_> = bases.iter().keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(left, [base_key(0, 2).to_vec(), base_key(2, 1).to_vec()]);
    assert_eq!(drop_unnamed(&bases, &[2, 0, 1]).unwrap(), 0);
}

// The journal around them: a ring acknowledged one row a commit, as a trickle does.

/// Spools rows `rows` for slot 0 and acknowledges each in a commit of its own.
fn acknowledge(j: &Journal, rows: std::ops::Range<i64>) {
    for i in rows {
        let spooled = Spooled {
            row: row(i),
            want: 1,
            doubt: 0,
            takeover: 0,
            replay: 0,
        };
        j.append(&[spooled], pos(100 + i as u64), 0, 0).unwrap();
        let e = j.peek(0, 1).unwrap();
        j.settle(0, &[&e[0]], &[], false, None).unwrap();
    }
}

fn acknowledged(j: &Journal, rows: std::ops::Range<i64>) -> usize {
    let ring = j.ring(0);
    rows.filter(|&i| ring.count(row(i).identity()) == 1).count()
}

/// A journal from before the tree of bases (its base the `r` record beside the meta,
/// a meta without `ring_base`) opens with its ring whole; its next base goes to the
/// tree and the `r` record goes in the same commit; a reopen reads the ring from there;
/// a base no commit names (its commit lost in a crash) is dropped at open.
#[test]
fn a_journal_with_its_base_beside_the_meta_opens_whole_and_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.bind(&[String::new()]).unwrap();
        acknowledge(&j, 0..3);
        // What an older qlship left: the ring's first 3 rows in the base, 3 more in
        // deltas, and its meta encoding, which ends before the ring bases.
        let old_base = j.ring(0).encode();
        let mut ops = sled::Batch::default();
        drop_deltas(&mut ops, 0, &mut j.state.lock().unwrap().ring_deltas[0]);
        ops.insert(ring_key(0), old_base);
        j.db.apply_batch(ops).unwrap();
        acknowledge(&j, 3..6);
        let meta = j.meta();
        assert_eq!(meta.targets[0].ring_base, 0);
        let encoded = meta.encode();
        j.db.insert(b"m", &encoded[..encoded.len() - meta.targets.len()])
            .unwrap();
        j.sync().unwrap();
    }
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(acknowledged(&j, 0..6), 6);
    assert_eq!(j.meta().targets[0].ring_base, 0);
    // 3 deltas on disk: the 62nd acknowledgement from here still writes a delta, the
    // next a base.
    acknowledge(&j, 6..6 + i64::from(MAX_DELTAS) - 3);
    assert!(j.db.get(ring_key(0)).unwrap().is_some());
    acknowledge(&j, 67..68);
    assert_eq!(j.meta().targets[0].ring_base, 1);
    assert_eq!(j.db.get(ring_key(0)).unwrap(), None, "r went with the move");
    assert_eq!(j.bases.len(), 1);
    assert_eq!(j.db.scan_prefix([DELTA]).count(), 0);
    acknowledge(&j, 68..70);
    let ring = j.ring(0);
    assert_eq!(acknowledged(&j, 0..70), 70);
    // A base written for a commit that was then lost, and one whose removal was lost.
    write_base(&j.bases, 0, 2, &AckedRing::default().encode()).unwrap();
    write_base(&j.bases, 1, 1, &AckedRing::default().encode()).unwrap();
    j.sync().unwrap();
    drop(j);
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(j.ring(0), ring);
    let left: Vec<_> = j.bases.iter().keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(left, [base_key(0, 1).to_vec()]);
}

/// A freed slot's base goes with it, and its next target starts a ring of its own.
#[test]
fn a_freed_slot_takes_its_base_along() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    j.bind(&["a".to_string()]).unwrap();
    acknowledge(&j, 0..i64::from(MAX_DELTAS) + 1);
    assert_eq!((j.meta().targets[0].ring_base, j.bases.len()), (1, 1));
    j.bind(&["b".to_string()]).unwrap();
    assert_eq!((j.meta().targets[0].ring_base, j.bases.len()), (0, 0));
    assert_eq!(j.ring(0).len(), 0);
    drop(j);
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(j.ring(0).len(), 0);
}
