use super::meta::put_pos;
use super::open::{suspect_marker, MAX_FAILED_OPENS};
use super::*;
use crate::row::{put_varint, DecodeError, Row};

/// In-flight windows: what the journal does with a mark left by the previous run.
mod window;

pub(super) fn row(i: i64) -> Row {
    Row::new(1000 + i, &format!("c{i}"), "q", "a", "V", [""; 5])
}

pub(super) fn pos(offset: u64) -> FilePos {
    FilePos {
        id: FileId { dev: 1, ino: 2 },
        offset,
        fp_hash: 3,
        fp_len: offset.min(4) as u32,
        skipping: false,
        since: 1_700_000_000_000_000_000,
        live: true,
        replay_until: offset / 2,
        replay_pass: offset / 3,
        head: offset * 5,
    }
}

fn tm(key: &str) -> TargetMeta {
    TargetMeta::new(Some(key.into()))
}

#[test]
fn meta_round_trips() {
    let mut t = tm("http://a:1/q/jsonQLoaderApi.do P1");
    t.inflight = Some((2, 4));
    t.inflight_sent_ms = 1_700_000_000_123;
    t.reread_doubt_below = 9;
    t.takeover = Takeover::Done(Some(1_700_000_000));
    t.pending_rows = 3;
    t.acked_total = 77;
    t.acked_today = 7;
    t.acked_day = 20_000;
    t.ring_base = 3;
    let mut empty = tm("");
    empty.takeover = Takeover::Done(None);
    let m = Meta {
        generation: 42,
        pos: Some(pos(77)),
        next_seq: 5,
        spool_rows: 3,
        spool_bytes: 300,
        region: Some(Region {
            id: FileId { dev: 9, ino: 8 },
            end: 1234,
        }),
        bad_lines: 3,
        unrouted: 11,
        finished: vec![Finished {
            id: FileId { dev: 1, ino: 99 },
            head: 12345,
            len: 777,
            fp: 4242,
        }],
        targets: vec![t, TargetMeta::new(None), empty, tm("x")],
    };
    assert_eq!(Meta::decode(&m.encode()).unwrap(), m);
    assert_eq!(
        Meta::decode(&Meta::default().encode()).unwrap(),
        Meta::default()
    );
}

#[test]
fn journal_fields_out_of_range_are_refused_not_trusted() {
    // A fingerprint longer than the offset would make the reader subtract past the
    // start of the file (it used to panic at every start: a restart loop).
    for (offset, fp_len) in [(10, 11), (1 << 20, 257)] {
        let m = Meta {
            pos: Some(FilePos {
                fp_len,
                ..pos(offset)
            }),
            ..Meta::default()
        };
        assert_eq!(
            Meta::decode(&m.encode()),
            Err(DecodeError::OutOfRange("fingerprint length"))
        );
    }
}

#[test]
fn a_journal_from_before_targets_is_read_as_the_single_target() {
    // Version 2 meta, as the previous release wrote it: generation 7, pos, seq 5,
    // 2 rows / 99 bytes spooled, in flight 3..=4 sent at 1000, takeover done at
    // watermark 1_700_000_000 over file 9:8 up to 1234, 1 bad line, no finished
    // file, 10 acknowledged, 4 today on day 20000.
    let mut v = vec![2u8];
    put_varint(&mut v, 7);
    put_pos(&mut v, &Some(pos(30)));
    for x in [5u64, 2, 99] {
        put_varint(&mut v, x);
    }
    v.push(1);
    for x in [3u64, 4, 1000] {
        put_varint(&mut v, x);
    }
    v.push(2);
    for x in [9u64, 8, 1234, 1_700_000_000] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    for x in [1u64, 0, 10, 4, 20_000] {
        put_varint(&mut v, x);
    }
    let m = Meta::decode(&v).unwrap();
    assert_eq!(
        (m.generation, m.pos, m.next_seq, m.spool_rows),
        (
            7,
            Some(FilePos {
                replay_until: 0,
                replay_pass: 0,
                head: 0,
                ..pos(30)
            }),
            5,
            2
        )
    );
    assert_eq!(
        m.region,
        Some(Region {
            id: FileId { dev: 9, ino: 8 },
            end: 1234
        })
    );
    let t = &m.targets[..];
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].key.as_deref(), Some(""));
    assert_eq!(t[0].inflight, Some((3, 4)));
    assert_eq!(t[0].takeover, Takeover::Done(Some(1_700_000_000)));
    assert_eq!(
        (t[0].pending_rows, t[0].acked_total, t[0].acked_today),
        (2, 10, 4)
    );
    // A version 1 chunk: every row belongs to that target; flag 1 = in doubt.
    let mut c = vec![1u8];
    for (seq, flag) in [(5u64, 0u8), (6, 1)] {
        put_varint(&mut c, seq);
        c.push(flag);
        let mut r = Vec::new();
        row(seq as i64).encode_into(&mut r);
        put_varint(&mut c, r.len() as u64);
        c.extend_from_slice(&r);
    }
    let e = decode_chunk(5, &c).unwrap();
    assert_eq!(
        e.iter()
            .map(|e| (e.seq, e.want, e.doubt, e.takeover))
            .collect::<Vec<_>>(),
        [(5, 1, 0, 0), (6, 1, 1, 0)]
    );
}

fn spooled(i: i64, want: u64, doubt: u64) -> Spooled {
    Spooled {
        row: row(i),
        want,
        doubt,
        takeover: 0,
        replay: 0,
    }
}

#[test]
fn spool_append_settle_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.fresh);
        assert_eq!(j.bind(&[String::new()]).unwrap(), (vec![0], vec![]));
        j.append(
            &[spooled(1, 1, 0), spooled(2, 1, 1), spooled(3, 1, 0)],
            pos(30),
            0,
            0,
        )
        .unwrap();
        let all = j.peek(0, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[1].in_doubt(0));
        j.mark_inflight(0, 0, 1).unwrap();
        let batch = j.range(0, 0, 1).unwrap();
        j.settle(0, &[&batch[0]], &[&batch[1]], false, None)
            .unwrap();
        j.sync().unwrap();
    }
    let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(!report.fresh);
    let m = j.meta();
    assert_eq!(m.pos, Some(pos(30)));
    assert_eq!(m.spool_rows, 2);
    assert_eq!(m.targets[0].inflight, None);
    assert_eq!(m.targets[0].pending_rows, 2);
    let left = j.peek(0, 10).unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(!left[0].in_doubt(0));
    assert_eq!(j.ring(0).count(row(1).identity()), 1);
    let on_disk: u64 =
        j.db.scan_prefix(b"s")
            .map(|kv| kv.unwrap().1.len() as u64 + 9)
            .sum();
    assert_eq!(m.spool_bytes, on_disk);
}

#[test]
fn a_row_leaves_the_spool_when_the_last_target_wanting_it_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    let keys = ["a".to_string(), "b".to_string()];
    assert_eq!(j.bind(&keys).unwrap().0, [0, 1]);
    // 0: both; 1: a only; 2: b only.
    j.append(
        &[
            spooled(0, 0b11, 0),
            spooled(1, 0b01, 0),
            spooled(2, 0b10, 0b10),
        ],
        pos(1),
        0,
        5,
    )
    .unwrap();
    assert_eq!(j.meta().unrouted, 5);
    let seqs = |v: Vec<Entry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(j.peek(0, 10).unwrap()), [0, 1]);
    assert_eq!(seqs(j.peek(1, 10).unwrap()), [0, 2]);
    let a = j.peek(0, 10).unwrap();
    j.settle(0, &a.iter().collect::<Vec<_>>(), &[], false, None)
        .unwrap();
    assert_eq!(j.meta().spool_rows, 2, "row 0 stays for b");
    assert_eq!(seqs(j.peek(0, 10).unwrap()), Vec::<u64>::new());
    let b = j.peek(1, 10).unwrap();
    assert!(b[1].in_doubt(1) && !b[0].in_doubt(1));
    j.settle(1, &[&b[0]], &[&b[1]], false, None).unwrap();
    let b = j.peek(1, 10).unwrap();
    assert_eq!(seqs(b.clone()), [2]);
    assert!(!b[0].in_doubt(1), "settled to be sent");
    j.settle(1, &[&b[0]], &[], false, None).unwrap();
    let m = j.meta();
    assert_eq!((m.spool_rows, m.spool_bytes), (0, 0));
    assert_eq!((m.targets[0].acked_total, m.targets[1].acked_total), (2, 2));
    assert_eq!(
        (m.targets[0].pending_rows, m.targets[1].pending_rows),
        (0, 0)
    );
}

#[test]
fn a_target_dropped_from_the_rules_frees_its_rows_and_slot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.bind(&["a".to_string(), "b".to_string()]).unwrap();
        j.append(
            &[
                spooled(0, 0b11, 0),
                spooled(1, 0b10, 0),
                spooled(2, 0b01, 0),
            ],
            pos(1),
            0,
            0,
        )
        .unwrap();
        let b = j.peek(1, 1).unwrap();
        j.settle(1, &[&b[0]], &[], false, None).unwrap();
        j.sync().unwrap();
    }
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(j.ring(1).len(), 1);
    let (slots, dropped) = j.bind(&["c".to_string(), "a".to_string()]).unwrap();
    assert_eq!(slots, [1, 0], "c takes b's freed slot, a keeps its own");
    assert_eq!(dropped, [("b".to_string(), 1)]);
    let m = j.meta();
    assert_eq!(m.spool_rows, 2, "b's own row went; rows a wants stay");
    assert_eq!(m.targets[1].key.as_deref(), Some("c"));
    assert_eq!(m.targets[1].takeover, Takeover::Pending);
    assert_eq!(
        j.ring(1).len(),
        0,
        "c does not inherit b's acknowledged rows"
    );
    assert!(j.peek(1, 10).unwrap().is_empty());
    assert_eq!(j.peek(0, 10).unwrap().len(), 2);
}

#[test]
fn a_second_opener_is_told_the_journal_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (_j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    match Journal::open(dir.path(), 1 << 20) {
        Err(JournalError::Locked(_)) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_damaged_journal_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[spooled(1, 1, 0)], pos(10), 0, 0).unwrap();
        j.db.insert(b"m", &b"\x09garbage"[..]).unwrap();
        j.sync().unwrap();
    }
    let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(report.fresh);
    assert!(report.moved_aside.as_ref().unwrap().exists());
    assert_eq!(j.meta(), Meta::default());
}

#[test]
fn a_journal_older_than_its_seal_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[spooled(1, 1, 0)], pos(10), 0, 0).unwrap();
        j.sync().unwrap();
        // As if later commits had been made durable and then lost.
        j.seal.write(j.meta().generation + 5).unwrap();
    }
    let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(report.moved_aside.is_some());
    // Its spooled row is salvaged, in doubt (see journal/salvage/tests.rs).
    assert!(report.salvaged[0].stale);
    let rows = j.peek(0, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].in_doubt(0));
}

#[test]
fn a_journal_marked_suspect_is_moved_aside_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[spooled(1, 1, 0)], pos(10), 0, 0).unwrap();
        j.sync().unwrap();
    }
    mark_suspect(dir.path());
    let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(report.moved_aside.is_some());
    j.append(&[spooled(2, 1, 0)], pos(20), 0, 0).unwrap();
    j.sync().unwrap();
    drop(j);
    let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(report.moved_aside.is_none());
    assert_eq!(j.meta().pos, Some(pos(20)));
}

#[test]
fn one_interrupted_open_is_not_damage_but_many_in_a_row_are() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[spooled(1, 1, 0)], pos(10), 0, 0).unwrap();
        j.sync().unwrap();
    }
    let marker = suspect_marker(dir.path());
    std::fs::write(&marker, "1\n").unwrap();
    let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(report.moved_aside.is_none());
    assert_eq!(j.meta().pos, Some(pos(10)));
    assert!(!marker.exists());
    drop(j);
    std::fs::write(&marker, format!("{MAX_FAILED_OPENS}\n")).unwrap();
    let (_j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(report.moved_aside.is_some());
}

#[test]
fn the_queue_log_is_fdatasynced_again_only_once_written_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue_log");
    std::fs::write(&path, "1|a|q|NONE|ENTERQUEUE||1|1\n").unwrap();
    let mut source = Source {
        file: File::open(&path).unwrap(),
        synced: None,
    };
    assert!(source.sync().unwrap(), "never synced");
    assert!(!source.sync().unwrap(), "nothing written since");
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append("2|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(source.sync().unwrap(), "appended to");
    assert!(!source.sync().unwrap());
    // Rewritten in place to the same size: the modification time tells.
    std::thread::sleep(std::time::Duration::from_millis(20));
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(b"3").unwrap();
    }
    assert!(source.sync().unwrap(), "rewritten, same size");
}

/// Regression (vendored sled, `iobuf.rs`): log segments were freed only as far as a
/// flush had fsynced the log, so a journal never synced (rows spooled while no server
/// was ever reached) reused none of its log: 6,000 single-row commits, each tenth
/// settling the rows before it, grew it to 21 MiB. Now 2.5 MiB, as when synced often.
#[test]
fn a_journal_never_synced_still_reuses_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    j.bind(&[String::new()]).unwrap();
    for i in 0..6_000 {
        j.append(&[spooled(i, 1, 0)], pos(i as u64), 0, 0).unwrap();
        if i % 10 == 9 {
            let spooled = j.peek(0, 10).unwrap();
            let stored: Vec<_> = spooled.iter().collect();
            j.settle(0, &stored, &[], false, None).unwrap();
        }
    }
    let log = std::fs::metadata(dir.path().join("journal/db"))
        .unwrap()
        .len();
    eprintln!("log after 6,000 commits never synced: {} KiB", log >> 10);
    assert!(log < 8 << 20, "the log grew to {} KiB", log >> 10);
}

/// What the uploader's sync when idle looks at: commits since the last sync.
#[test]
fn commits_since_the_last_sync_are_unsynced_until_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(!j.has_unsynced(), "what was opened counts as synced");
    j.bind(&[String::new()]).unwrap();
    j.append(&[spooled(1, 1, 0)], pos(10), 0, 0).unwrap();
    assert!(j.has_unsynced());
    j.mark_inflight(0, 0, 0).unwrap();
    assert!(!j.has_unsynced(), "an in-flight mark is synced");
    let batch = j.range(0, 0, 0).unwrap();
    j.settle(0, &[&batch[0]], &[], false, None).unwrap();
    assert!(
        j.has_unsynced(),
        "an acknowledgement is not synced on its own"
    );
    j.sync().unwrap();
    assert!(!j.has_unsynced());
}
