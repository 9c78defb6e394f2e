use super::*;
use std::io::Write;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The outcome of whatever events are waiting now.
fn outcome(w: &mut Watches) -> Outcome {
    let events = w.pending();
    w.handle(&events)
}

fn woken(w: &mut Watches) -> bool {
    outcome(w).wake
}

#[test]
fn a_neighbour_written_to_wakes_nothing_but_the_queue_log_does() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    let full = dir.path().join("full");
    append(&ql, "1|a|q|NONE|ENTERQUEUE||1|1\n");
    append(&full, "start\n");
    let mut w = Watches::start(&ql).unwrap();
    for _ in 0..20 {
        append(&full, "[Nov 30] VERBOSE pbx.c: Executing\n");
    }
    assert!(
        w.pending().is_empty(),
        "a neighbour's appends reached the watch"
    );
    append(&ql, "2|b|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w));
    // Truncated in place (copytruncate): IN_MODIFY too.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ql)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(woken(&mut w));
}

#[test]
fn names_coming_and_going_wake_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    let mut w = Watches::start(&ql).unwrap();
    assert_eq!(w.live_wd, None, "no file yet");
    append(&dir.path().join("messages.1"), "x\n");
    assert!(woken(&mut w), "a creation in the directory");
    std::fs::remove_file(dir.path().join("messages.1")).unwrap();
    assert!(woken(&mut w), "a deletion in the directory");
    append(&ql, "1|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w));
    assert!(
        w.live_wd.is_some(),
        "the file got its watch when it appeared"
    );
    append(&ql, "2|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w), "and its appends are seen");
}

#[test]
fn after_a_rotation_both_files_are_watched_and_older_ones_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    let rotated = dir.path().join("queue_log.1");
    append(&ql, "1|a|q|NONE|ENTERQUEUE||1|1\n");
    let mut w = Watches::start(&ql).unwrap();
    std::fs::rename(&ql, &rotated).unwrap();
    assert!(woken(&mut w), "the rename");
    // Late rows Asterisk writes before it reopens: the watch followed the inode.
    append(&rotated, "2|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w), "a late row in the rotated file");
    append(&ql, "3|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w), "the new file's creation");
    append(&ql, "4|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w), "an append to the new file");
    append(&rotated, "5|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w), "the rotated file is still watched");
    // A second rotation: the oldest file is no longer watched.
    std::fs::rename(&rotated, dir.path().join("queue_log.2")).unwrap();
    std::fs::rename(&ql, &rotated).unwrap();
    append(&ql, "6|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w));
    append(
        &dir.path().join("queue_log.2"),
        "7|a|q|NONE|ENTERQUEUE||1|1\n",
    );
    assert!(
        !woken(&mut w),
        "a file two rotations old is still watched: {:?}",
        w.pending()
    );
    append(&rotated, "8|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w));
    append(&ql, "9|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w));
}

#[test]
fn a_deleted_and_recreated_queue_log_is_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let ql = dir.path().join("queue_log");
    append(&ql, "1|a|q|NONE|ENTERQUEUE||1|1\n");
    let mut w = Watches::start(&ql).unwrap();
    std::fs::remove_file(&ql).unwrap();
    let o = outcome(&mut w);
    assert!(o.wake && !o.lost, "{o:?}");
    assert_eq!(w.live_wd, None, "the deleted file's watch ended");
    append(&ql, "2|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w));
    append(&ql, "3|a|q|NONE|ENTERQUEUE||1|1\n");
    assert!(woken(&mut w), "the new file is watched");
}

#[test]
fn the_directory_going_away_ends_the_watch() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("asterisk");
    std::fs::create_dir(&dir).unwrap();
    let mut w = Watches::start(&dir.join("queue_log")).unwrap();
    std::fs::rename(&dir, parent.path().join("gone")).unwrap();
    assert!(outcome(&mut w).lost);
    assert!(Watches::start(&parent.path().join("missing/queue_log")).is_err());
}

#[test]
fn events_are_parsed_with_their_padded_names() {
    let mut bytes = Vec::new();
    for (wd, mask, name) in [
        (1i32, libc::IN_CREATE, &b"queue_log"[..]),
        (2, libc::IN_MODIFY, b""),
    ] {
        let len = if name.is_empty() { 0 } else { 16 };
        bytes.extend_from_slice(&wd.to_ne_bytes());
        bytes.extend_from_slice(&mask.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&(len as u32).to_ne_bytes());
        let mut padded = name.to_vec();
        padded.resize(len, 0);
        bytes.extend_from_slice(&padded);
    }
    assert_eq!(
        parse(&bytes),
        vec![
            Event {
                wd: 1,
                mask: libc::IN_CREATE,
                name: "queue_log".into()
            },
            Event {
                wd: 2,
                mask: libc::IN_MODIFY,
                name: OsString::new()
            },
        ]
    );
}
