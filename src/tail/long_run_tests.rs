//! A reader running for years: what it keeps about generations stays bounded.

use super::tests::{append, ids, line};
use super::*;

/// 100 daily logrotate rotations (numbered, three kept, the oldest deleted), each day's
/// rows read: every row once, and what the reader remembers of generations (when each
/// was left, warnings given, records checked against files) no more than its record
/// of finished generations and the files there are.
#[test]
fn what_the_reader_knows_of_generations_stays_bounded_over_many_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    let gen = |n: u32| dir.path().join(format!("queue_log.{n}"));
    append(&ql, &line(0));
    let mut t = Tail::resume(&ql, None, &[], Duration::ZERO, 1 << 17, None).unwrap();
    let mut got = Vec::new();
    let mut drain = |t: &mut Tail| {
        for _ in 0..100 {
            match t.step().unwrap() {
                Step::Read(r) => {
                    got.extend(r.rows.iter().map(|(row, _)| row.call_id().to_owned()));
                    t.commit(r);
                }
                Step::Switched(_) => {}
                Step::Idle | Step::Missing => return,
            }
        }
        panic!("the reader never went idle");
    };
    drain(&mut t);
    for day in 1..=100 {
        let _ = std::fs::remove_file(gen(3));
        for n in (1..3).rev() {
            let _ = std::fs::rename(gen(n), gen(n + 1));
        }
        std::fs::rename(&ql, gen(1)).unwrap();
        append(&ql, &line(day));
        drain(&mut t);
    }
    assert_eq!(got, ids(0..101));
    let cap = crate::journal::FINISHED_CAP;
    assert!(t.record.len() <= cap);
    assert!(t.left_at.len() <= cap, "{} left_at", t.left_at.len());
    assert!(t.warned.len() <= cap);
    assert!(t.checked.len() <= 4, "{} checks kept", t.checked.len());
}
