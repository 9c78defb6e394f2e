use super::*;
use std::io::Write;
use std::os::unix::fs::FileExt;

pub(super) fn line(i: u32) -> String {
    format!("{}|call{i}|q|Agent/1|ENTERQUEUE||{i}\n", 1_700_000_000 + i)
}

pub(super) fn append(path: &Path, s: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(s.as_bytes())
        .unwrap();
}

/// Drives the tail to idle, collecting call ids; returns them and the final position.
/// A tail on `ql` from `pos`, no grace period, nothing finished, no takeover.
fn open_at(ql: &Path, pos: Option<FilePos>) -> Tail {
    Tail::resume(ql, pos, &[], Duration::ZERO, 1 << 17, None).unwrap()
}

fn drain(tail: &mut Tail) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        match tail.step().unwrap() {
            Step::Read(r) => {
                out.extend(r.rows.iter().map(|(row, _)| row.call_id().to_owned()));
                tail.commit(r);
            }
            Step::Switched(_) => {}
            Step::Idle | Step::Missing => return out,
        }
    }
    panic!("tail never went idle");
}

/// Truncates `path` to nothing, as copytruncate's second step does.
pub(super) fn truncate(path: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(0).unwrap();
}

pub(super) fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("call{i}")).collect()
}

#[test]
fn resumes_at_the_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..3).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..3));
    let pos = t.pos();
    append(&ql, &line(3));
    let mut t = open_at(&ql, pos);
    assert_eq!(drain(&mut t), ids(3..4));
}

#[test]
fn rename_rotation_finishes_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &line(0));
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..1));
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    append(&dir.path().join("queue_log.1"), &line(1));
    append(&ql, &line(2));
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    assert_eq!(got, ids(0..3)[1..].to_vec());
}

#[test]
fn two_rotations_while_stopped_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..2).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    drain(&mut t);
    let pos = t.pos();
    append(&ql, &line(2));
    std::fs::rename(&ql, dir.path().join("queue_log.2")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    append(&ql, &line(3));
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    append(&ql, &line(4));
    let mut t = open_at(&ql, pos);
    assert_eq!(drain(&mut t), ids(2..5));
}

#[test]
fn copytruncate_with_a_writer_keeping_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..3).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..3));
    let old_len = std::fs::metadata(&ql).unwrap().len();
    std::fs::copy(&ql, dir.path().join("queue_log.1")).unwrap();
    // Truncate, then the writer (no O_APPEND) writes at its old offset: a sparse hole.
    let f = std::fs::OpenOptions::new().write(true).open(&ql).unwrap();
    f.set_len(0).unwrap();
    f.write_all_at(line(3).as_bytes(), old_len).unwrap();
    assert_eq!(drain(&mut t), ids(3..4));
}

#[test]
fn delete_and_recreate_while_stopped_reads_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..3).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    drain(&mut t);
    let pos = t.pos();
    drop(t);
    std::fs::remove_file(&ql).unwrap();
    append(&ql, &(10..15).map(line).collect::<String>());
    let mut t = open_at(&ql, pos);
    assert_eq!(drain(&mut t), ids(10..15));
}

#[test]
fn rows_of_the_takeover_region_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..5).map(line).collect::<String>());
    let meta = std::fs::metadata(&ql).unwrap();
    let region = Region {
        id: id_of(&meta),
        end: meta.len(),
    };
    let mut t = Tail::resume(&ql, None, &[], Duration::ZERO, 1 << 17, Some(region)).unwrap();
    append(&ql, &(5..7).map(line).collect::<String>());
    let mut seen = Vec::new();
    loop {
        match t.step().unwrap() {
            Step::Read(r) => {
                seen.extend(
                    r.rows
                        .iter()
                        .map(|(row, origin)| (row.call_id().to_owned(), origin.in_region)),
                );
                t.commit(r);
            }
            Step::Switched(_) => {}
            _ => break,
        }
    }
    let expected: Vec<(String, bool)> = (0..7).map(|i| (format!("call{i}"), i < 5)).collect();
    assert_eq!(seen, expected, "rows appended after the region are new");
}

/// Every row read until idle, with whether it is read again (in doubt).
fn drain_replays(tail: &mut Tail) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        match tail.step().unwrap() {
            Step::Read(r) => {
                let rows = r.rows.iter();
                out.extend(rows.map(|(row, o)| (row.call_id().to_owned(), o.replay != 0)));
                tail.commit(r);
            }
            Step::Switched(_) => {}
            Step::Idle | Step::Missing => return out,
        }
    }
    panic!("tail never went idle");
}

fn replays(read_again: std::ops::Range<u32>, new: std::ops::Range<u32>) -> Vec<(String, bool)> {
    let again = read_again.map(|i| (format!("call{i}"), true));
    again
        .chain(new.map(|i| (format!("call{i}"), false)))
        .collect()
}

#[test]
fn a_file_that_came_back_shorter_is_read_again_in_doubt() {
    // A power cut took back the tail Asterisk never synced: the file (same inode)
    // is shorter than where qlship had read, and Asterisk appends after it.
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..10).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..10));
    let saved = t.pos();
    let keep = (0..6).map(line).collect::<String>().len() as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ql)
        .unwrap()
        .set_len(keep)
        .unwrap();
    append(&ql, &(20..24).map(line).collect::<String>());
    let mut t = open_at(&ql, saved);
    // Every row there when the shrink is found may have been shipped (the lines up
    // to where qlship had read, or beyond if an edit moved them): in doubt. Rows
    // appended after that are new.
    append(&ql, &(24..27).map(line).collect::<String>());
    let mut expected = replays(0..6, 0..0);
    expected.extend(replays(20..24, 24..27));
    assert_eq!(drain_replays(&mut t), expected);
}

#[test]
fn a_file_rewritten_by_sed_i_while_stopped_is_read_again_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..8).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..8));
    let saved = t.pos();
    // sed -i writes a new file (a new inode) and renames it over the old one.
    let edited = dir.path().join("queue_log.sed");
    append(&edited, &(1..8).map(line).collect::<String>());
    std::fs::rename(&edited, &ql).unwrap();
    let mut t = open_at(&ql, saved);
    assert_eq!(drain_replays(&mut t), replays(1..8, 0..0));
}

#[test]
fn a_file_truncated_without_a_copy_while_running_is_read_again_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..8).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..8));
    // Rewritten in place (an editor, `> queue_log` then a replay of old rows).
    std::fs::write(&ql, (2..5).map(line).collect::<String>()).unwrap();
    assert_eq!(drain_replays(&mut t), replays(2..5, 0..0));
    append(&ql, &(10..20).map(line).collect::<String>());
    // Up to the old end (8 lines) everything is in doubt; what lies past it is new.
    assert_eq!(drain_replays(&mut t), replays(10..15, 15..20));
}

fn copytruncate(ql: &Path, to: &Path) {
    std::fs::copy(ql, to).unwrap();
    truncate(ql);
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn regression_two_copytruncates_while_stopped_read_both_copies() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..3).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    drain(&mut t);
    let pos = t.pos();
    drop(t);
    append(&ql, &line(3));
    copytruncate(&ql, &dir.path().join("queue_log-1"));
    append(&ql, &line(4));
    copytruncate(&ql, &dir.path().join("queue_log-2"));
    append(&ql, &line(5));
    let mut t = open_at(&ql, pos);
    assert_eq!(drain(&mut t), ids(3..6));
}

#[test]
fn regression_copytruncate_before_anything_was_read_reads_the_copies_first() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, "");
    let mut t = open_at(&ql, None);
    assert!(matches!(t.step().unwrap(), Step::Switched(_)));
    let pos = t.pos();
    assert_eq!(pos.unwrap().offset, 0);
    drop(t);
    std::thread::sleep(Duration::from_millis(20));
    append(&ql, &line(0));
    copytruncate(&ql, &dir.path().join("queue_log-1"));
    append(&ql, &line(1));
    copytruncate(&ql, &dir.path().join("queue_log-2"));
    append(&ql, &line(2));
    let mut t = open_at(&ql, pos);
    assert_eq!(drain(&mut t), ids(0..3));
}

#[test]
fn regression_a_finished_rotated_file_is_not_read_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..2).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    drain(&mut t);
    append(&ql, &line(2));
    copytruncate(&ql, &dir.path().join("queue_log-1"));
    append(&ql, &line(3));
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    assert_eq!(got, ids(2..4));
    let (pos, done) = (t.pos(), t.take_finished());
    assert_eq!(done.len(), 1, "the copy was finished");
    drop(t);
    std::fs::rename(&ql, dir.path().join("queue_log.2")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    append(&ql, &line(4));
    let mut t = Tail::resume(&ql, pos, &done, Duration::ZERO, 1 << 17, None).unwrap();
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    assert_eq!(got, ids(4..5));
}

#[test]
fn regression_two_rename_rotations_while_the_first_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &line(0));
    // A long grace no longer holds the newer generations back.
    let mut t = Tail::resume(&ql, None, &[], Duration::from_secs(300), 1 << 17, None).unwrap();
    assert_eq!(drain(&mut t), ids(0..1));
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    append(&ql, &line(1));
    // logrotate's way: the older generation moves up first.
    std::fs::rename(
        dir.path().join("queue_log.1"),
        dir.path().join("queue_log.2"),
    )
    .unwrap();
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    append(&ql, &line(2));
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    got.extend(drain(&mut t));
    assert_eq!(got, ids(1..3));
}

#[test]
fn a_rotated_file_the_writer_still_appends_to_is_read_on_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &line(0));
    let mut t = Tail::resume(&ql, None, &[], Duration::ZERO, 1 << 17, None).unwrap();
    assert_eq!(drain(&mut t), ids(0..1));
    // Renamed; no `logger reload`: the writer goes on appending to queue_log.1.
    let rotated = dir.path().join("queue_log.1");
    std::fs::rename(&ql, &rotated).unwrap();
    append(&ql, "");
    append(&rotated, &line(1));
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    assert_eq!(got, ids(1..2));
    for i in 2..5 {
        append(&rotated, &line(i));
        let mut got = drain(&mut t);
        got.extend(drain(&mut t));
        assert_eq!(got, ids(i..i + 1), "burst {i}");
    }
    let warnings: Vec<_> = t.take_notes().into_iter().filter(|n| n.warn).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].text.contains("queue_log.1"));
    assert!(warnings[0].text.contains("logger reload"));
    // After a restart, the journaled record of how far it was read keeps it so.
    let (pos, done) = (t.pos(), t.take_finished());
    drop(t);
    append(&rotated, &line(5));
    append(&ql, &line(6));
    let mut t = Tail::resume(&ql, pos, &done, Duration::ZERO, 1 << 17, None).unwrap();
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    got.sort();
    assert_eq!(got, ids(5..7));
}

#[test]
fn a_generation_left_only_compressed_is_read_from_where_reading_was() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..3).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..3));
    let pos = t.pos();
    drop(t);
    // Stopped over two rotations with compress + delaycompress.
    append(&ql, &(3..5).map(line).collect::<String>());
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    append(&ql, &(5..7).map(line).collect::<String>());
    std::fs::rename(
        dir.path().join("queue_log.1"),
        dir.path().join("queue_log.2"),
    )
    .unwrap();
    let gz = std::process::Command::new("gzip")
        .arg(dir.path().join("queue_log.2"))
        .status()
        .unwrap();
    assert!(gz.success());
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    append(&ql, &(7..9).map(line).collect::<String>());
    let mut t = open_at(&ql, pos);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(drain(&mut t));
    }
    assert_eq!(got, ids(3..9));
}

#[test]
fn rotated_copies_of_other_names_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &line(0));
    let mut t = open_at(&ql, None);
    drain(&mut t);
    let pos = t.pos();
    drop(t);
    std::fs::copy(&ql, dir.path().join("queue_log.bak")).unwrap();
    std::fs::copy(&ql, dir.path().join("queue_log.1.gz")).unwrap();
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    append(&ql, &line(1));
    let mut t = open_at(&ql, pos);
    let mut got = drain(&mut t);
    got.extend(drain(&mut t));
    assert_eq!(got, ids(1..2));
}

#[test]
fn a_damaged_compressed_generation_is_left_with_a_warning_and_the_rest_read() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &line(0));
    let mut t = open_at(&ql, None);
    assert_eq!(drain(&mut t), ids(0..1));
    let pos = t.pos();
    drop(t);
    append(&ql, &(1..400).map(line).collect::<String>());
    std::fs::rename(&ql, dir.path().join("queue_log.1")).unwrap();
    let gz = std::process::Command::new("gzip")
        .arg(dir.path().join("queue_log.1"))
        .status()
        .unwrap();
    assert!(gz.success());
    // Flip bytes in the middle of the compressed stream.
    let gz_path = dir.path().join("queue_log.1.gz");
    let mut bytes = std::fs::read(&gz_path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&gz_path, bytes).unwrap();
    append(&ql, &line(400));
    let mut t = open_at(&ql, pos);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(drain(&mut t));
    }
    assert_eq!(
        got.last(),
        Some(&"call400".to_string()),
        "the newer file is read"
    );
    let warned = t
        .take_notes()
        .into_iter()
        .any(|n| n.warn && n.text.contains("damaged"));
    assert!(warned);
}

#[test]
fn a_position_at_a_files_start_with_rows_in_doubt_keeps_them_in_doubt() {
    // A salvaged journal that lost commits: its position is at the file's start and
    // every row from there on may have been shipped.
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, &(0..4).map(line).collect::<String>());
    let mut t = open_at(&ql, None);
    assert!(matches!(t.step().unwrap(), Step::Switched(_)));
    let start = t.pos().unwrap();
    drop(t);
    let saved = FilePos {
        replay_until: u64::MAX,
        replay_pass: 3,
        head: start.head.max(1),
        ..start
    };
    let mut t = open_at(&ql, Some(saved));
    assert_eq!(drain_replays(&mut t), replays(0..4, 0..0));
}
