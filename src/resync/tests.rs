#[test]
fn takeover_rows_use_the_recorded_watermark_not_the_live_one() {
    // Our own uploads raised the live watermark to 20; a row of the region at 15
    // was never stored by the earlier loader (its watermark was 10).
    assert_eq!(judge(15, true, Some(10), Some(20), false), Judgement::Send);
    assert_eq!(judge(9, true, Some(10), Some(20), false), Judgement::Stored);
    assert_eq!(judge(10, true, Some(10), Some(20), false), Judgement::Ask);
    assert_eq!(judge(9, true, None, Some(20), false), Judgement::Send);
    assert_eq!(judge(15, false, Some(10), Some(20), false), Judgement::Ask);
    assert_eq!(judge(21, false, Some(10), Some(20), false), Judgement::Send);
    assert_eq!(judge(1, false, Some(10), None, false), Judgement::Send);
    // Read again: above the earlier loader's watermark, but maybe sent by us.
    assert_eq!(judge(15, true, Some(10), Some(20), true), Judgement::Ask);
    assert_eq!(judge(9, true, Some(10), Some(20), true), Judgement::Stored);
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
            replay: 0,
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
fn a_first_read_counts_the_widest_pass_when_its_first_copies_are_missing() {
    // Lines a, b (twins, identity 7) first acknowledged in pass 0, found again by
    // pass 2: their copies count once, not twice.
    let mut ring = AckedRing::default();
    ring.add(10, 7);
    ring.add(10, 7);
    ring.add_as(10, 7, 2, true);
    ring.add_as(10, 7, 2, true);
    assert_eq!(ring.count(7), 2);
    // A journal that lost commits: pass 2 found both, pass 0's own entries are gone;
    // a third twin read for the first time after them is not taken for stored.
    let mut stale = AckedRing::default();
    stale.add_as(10, 7, 2, true);
    stale.add_as(10, 7, 2, true);
    assert_eq!(stale.count(7), 2);
    let doubt = [Doubt {
        seq: 9,
        identity: 7,
        replay: FIRST_READ_IN_DOUBT | 3,
    }];
    assert_eq!(
        decide(&doubt, &counts(&[(7, 2)]), &stale),
        (vec![], vec![9])
    );
    assert_eq!(
        decide(&doubt, &counts(&[(7, 3)]), &stale),
        (vec![9], vec![])
    );
    // Own copies of several passes add up (each a line of its own).
    stale.add_as(10, 7, 3, false);
    stale.add(10, 7);
    assert_eq!(stale.count(7), 2);
    stale.add(10, 7);
    assert_eq!(stale.count(7), 3);
}

#[test]
fn a_pass_of_first_reads_counts_every_acknowledged_twin_not_only_its_own() {
    // The twin just before a stale position was acknowledged in replay pass 4; the
    // row after it, read for the first time in doubt, is another line.
    let mut ring = AckedRing::default();
    ring.add_as(20, 5, 4, false);
    let first = FIRST_READ_IN_DOUBT | 5;
    let doubt = [Doubt {
        seq: 1,
        identity: 5,
        replay: first,
    }];
    assert_eq!(decide(&doubt, &counts(&[(5, 1)]), &ring), (vec![], vec![1]));
    // Read again in pass 5, the same row is the line pass 4 acknowledged.
    let again = [Doubt {
        replay: 5,
        ..doubt[0]
    }];
    assert_eq!(decide(&again, &counts(&[(5, 1)]), &ring), (vec![1], vec![]));
}

#[test]
fn passes_after_a_stale_position() {
    assert!(!found_is_not_own(0) && found_is_not_own(3));
    assert!(!found_is_not_own(FIRST_READ_IN_DOUBT | 3));
    assert_eq!(next_pass(FIRST_READ_IN_DOUBT | 3), 4);
    assert_eq!(next_pass(3), 4);
    // Inside a region read again: its pass goes on.
    assert_eq!(stale_position_pass(true, 3, [9]), 3);
    // Past it: first reads in doubt, above every pass used.
    let p = stale_position_pass(false, 3, [9]);
    assert!(is_first_read(p) && next_pass(p) == 11);
    assert_eq!(
        stale_position_pass(false, 12, [9]),
        FIRST_READ_IN_DOUBT | 13
    );
}

/// A first-read pass's flag is not a higher pass: a stale journal still spooling rows of
/// an earlier salvage's first-read pass (1, flagged) after the reader went on to plain
/// passes up to 5 (the file shrank again meanwhile) goes on above 5. Taking the flagged
/// pass for the highest put it at 2 (flagged), and the next region read again was
/// numbered 3 like an earlier one, whose acknowledgements then counted for it.
#[test]
fn a_stale_position_goes_on_above_plain_passes_a_flagged_one_preceded() {
    let first = stale_position_pass(false, 0, [0]);
    assert_eq!(first, FIRST_READ_IN_DOUBT | 1);
    let p = stale_position_pass(false, 5, [first, 0, 3]);
    assert!(is_first_read(p));
    assert_eq!(next_pass(p), 7, "the next region read again reuses a pass");
    // What reusing pass 3 does: line A (identity 7), stored once, was found again by
    // pass 3; read again by a new region numbered 3 too, that entry is taken for an
    // earlier line of the same pass and A is sent a second time. In a fresh pass it
    // is found stored.
    let mut ring = AckedRing::default();
    ring.add(10, 7);
    ring.add_as(10, 7, 3, true);
    let again = |replay| {
        let d = [Doubt {
            seq: 1,
            identity: 7,
            replay,
        }];
        decide(&d, &counts(&[(7, 1)]), &ring)
    };
    assert_eq!(again(3), (vec![], vec![1]));
    assert_eq!(again(next_pass(p)), (vec![1], vec![]));
}

#[test]
fn ring_prunes_by_window_and_cap_and_round_trips() {
    let mut ring = AckedRing::default();
    ring.add(0, 1);
    // More than the recent ones, all far from the first one's time.
    for i in 0..RING_RECENT as u64 {
        ring.add(RING_WINDOW_SECS + 10, 100 + i);
    }
    ring.prune();
    assert_eq!(ring.count(1), 0, "outside the window and not recent");
    assert_eq!(ring.count(100), 1);
    // The clock stepped a year back: the rows acknowledged since are kept, and so
    // are the last ones before the step (they may be a twin's neighbours in the
    // file); older ones from before the step go.
    ring.add(10 - 365 * 86_400, 3);
    ring.add(11 - 365 * 86_400, 4);
    ring.prune();
    assert_eq!(
        (
            ring.count(100),
            ring.count(101),
            ring.count(3),
            ring.count(4)
        ),
        (0, 0, 1, 1)
    );
    assert_eq!(ring.count(100 + RING_RECENT as u64 - 1), 1);
    for i in 0..(RING_CAP as u64 + 5) {
        ring.add(11 - 365 * 86_400, i);
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
