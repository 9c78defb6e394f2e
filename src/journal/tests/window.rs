//! In-flight windows across a restart (see `Journal::doubt_what_may_have_left` and
//! `TargetMeta::reread_doubt_below`).

use super::*;

/// An in-flight window: the previous run may have sent rows under the numbers its mark
/// covers. At the next open the spooled ones are in doubt, and so are rows read again
/// under those numbers (every row read takes one, kept or not, so a row read again
/// gets the number it had); rows past the window are not.
#[test]
fn rows_under_a_window_left_by_the_last_run_are_in_doubt_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.bind(&[String::new()]).unwrap();
        // Seq 0 is read but kept by no target: it still takes its number.
        let not_kept = Spooled {
            want: 0,
            ..spooled(0, 1, 0)
        };
        j.append(&[not_kept, spooled(1, 1, 0)], pos(20), 0, 0)
            .unwrap();
        j.mark_inflight(0, 1, 3).unwrap();
    }
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    let m = j.meta();
    assert_eq!((m.next_seq, m.targets[0].reread_doubt_below), (2, 4));
    j.append(
        &[spooled(2, 1, 0), spooled(3, 1, 0), spooled(4, 1, 0)],
        pos(50),
        0,
        0,
    )
    .unwrap();
    let doubt: Vec<(u64, bool)> = j
        .peek(0, 10)
        .unwrap()
        .iter()
        .map(|e| (e.seq, e.in_doubt(0)))
        .collect();
    assert_eq!(doubt, [(1, true), (2, true), (3, true), (4, false)]);
}

/// A target removed at a restart, and bound again later (the same server, after a
/// second cut before the reader was past its window): rows read again under its old
/// window are in doubt, because a freed slot keeps its bound for whoever binds next
/// (found by review: `TargetMeta::new(None)` had dropped it).
#[test]
fn a_removed_targets_bound_outlives_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.bind(&keys(&["a", "b"])).unwrap();
        j.append(&[spooled(0, 0b11, 0), spooled(1, 0b11, 0)], pos(20), 0, 0)
            .unwrap();
        j.mark_inflight(0, 0, 33).unwrap(); // a's window; b has none
    }
    {
        // Restart 1 (after a cut): a is removed (its backlog dropped).
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.meta().targets[0].reread_doubt_below, 34);
        j.bind(&keys(&["b"])).unwrap();
    }
    // Restart 2 (a second cut before the reader was past 33): a is back.
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    let (slots, _) = j.bind(&keys(&["b", "a"])).unwrap();
    let a = slots[1];
    j.append(&[spooled(2, 1 << a, 0)], pos(40), 0, 0).unwrap();
    let e = j.peek(a, 10).unwrap();
    assert!(
        e[0].in_doubt(a),
        "row 2 (sent to a's server under its window) is not in doubt: bound {}",
        j.meta().targets[a].reread_doubt_below
    );
}

/// A spool chunk that does not decode under an in-flight mark must not fail
/// `Journal::open` (`doubt_what_may_have_left` runs after the suspect marker is gone:
/// every start would fail the same way, and the journal never be moved aside and
/// salvaged). It is skipped there; the running daemon finds it as before and marks the
/// journal suspect (found by review).
#[test]
fn a_damaged_chunk_under_a_mark_does_not_fail_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.bind(&[String::new()]).unwrap();
        j.append(&[spooled(0, 1, 0), spooled(1, 1, 0)], pos(20), 0, 0)
            .unwrap();
        j.db.insert(spool_key(1_000), vec![CHUNK_VERSION, 0x80])
            .unwrap();
        j.mark_inflight(0, 0, 1_033).unwrap();
    }
    let failed: Vec<String> = (0..(MAX_FAILED_OPENS + 2))
        .filter_map(|_| Journal::open(dir.path(), 1 << 20).err())
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(
        failed.len() <= 1,
        "{} of {} opens failed, suspect marker {}: {:?}",
        failed.len(),
        MAX_FAILED_OPENS + 2,
        suspect_marker(dir.path()).exists(),
        failed.first()
    );
}
