use super::*;

#[test]
fn rotation_suffixes() {
    for ok in [
        ".1",
        ".12",
        "-20261123",
        ".2026-11-23",
        "_1700000000",
        "-20261123-1700000000",
        ".1.gz",
    ] {
        assert!(rank_of(ok).is_some(), "{ok}");
    }
    for no in ["", ".gz", ".bak", ".old", "-", ".", "x1", ".1~"] {
        assert!(rank_of(no).is_none(), "{no}");
    }
}

fn id(ino: u64) -> FileId {
    FileId { dev: 1, ino }
}

/// A generation with first row at `first` (its head too), `len` bytes.
fn gen(ino: u64, rank: Rank, gz: bool, first: i64, len: u64, mtime: i64) -> Gen {
    Gen {
        id: id(ino),
        rank,
        gz,
        len,
        head: first as u64 * 7 + 1,
        first_time: Some(first),
        mtime_ns: mtime,
    }
}

fn done(g: &Gen, len: u64) -> Finished {
    Finished {
        id: g.id,
        head: g.head,
        len,
        fp: 0,
    }
}

fn picked(gens: &[Gen], list: &[ToRead]) -> Vec<(u64, u64, bool)> {
    list.iter()
        .map(|t| (gens[t.gen].id.ino, t.offset, t.grew))
        .collect()
}

#[test]
fn names_give_ranks_and_only_rotation_suffixes_count() {
    assert_eq!(rank_of(".1"), Some((Rank::Numbered(1), false)));
    assert_eq!(rank_of(".2.gz"), Some((Rank::Numbered(2), true)));
    assert_eq!(
        rank_of("-20261123"),
        Some((Rank::Dated("20261123".into()), false))
    );
    assert_eq!(
        rank_of("-20261123.gz"),
        Some((Rank::Dated("20261123".into()), true))
    );
    assert_eq!(
        rank_of("_1700000000"),
        Some((Rank::Dated("1700000000".into()), false))
    );
    assert_eq!(rank_of(".bak"), None);
    assert_eq!(rank_of(".old"), None);
    assert_eq!(rank_of(".gz"), None);
    assert_eq!(rank_of("x1"), None);
}

#[test]
fn stopped_over_two_rotations_every_newer_generation_is_read_oldest_first() {
    // Day 1 was being read (to 300 of 900 bytes) and is now queue_log.2.gz (a new
    // inode); day 2 is queue_log.1; day 3 is queue_log. An older day 0 is history.
    let gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 3),
        gen(10, Rank::Numbered(3), true, 0, 800, 0),
        gen(11, Rank::Numbered(2), true, 1000, 900, 1),
        gen(12, Rank::Numbered(1), false, 2000, 700, 2),
    ];
    let record = [done(&gens[1], 800), done(&gens[2], 900)];
    // Day 1 was found and finished (the reader records it): day 2 and day 3 remain.
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        vec![(12, 0, false), (20, 0, false)]
    );
}

#[test]
fn mtimes_do_not_order_generations_their_first_rows_do() {
    // A Pi without a clock: the newer generation is dated 1970, the older one 2038.
    let mut gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 0),
        gen(11, Rank::Numbered(2), false, 1000, 900, i64::MAX / 2),
        gen(12, Rank::Numbered(1), false, 2000, 700, 0),
    ];
    let record = [done(&gens[1], 900)];
    let want = vec![(12, 0, false), (20, 0, false)];
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        want
    );
    // dateext names: greater is newer, whatever the mtimes.
    gens[1].rank = Rank::Dated("20261123".into());
    gens[2].rank = Rank::Dated("20261124".into());
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        want
    );
    // Names decide over rows: a clock stepped back a year before day 2 began; the
    // generations before it vote for logrotate's numbering as well.
    gens[1].rank = Rank::Numbered(2);
    gens[2].rank = Rank::Numbered(1);
    gens[2].first_time = Some(-31_000_000);
    gens.push(gen(10, Rank::Numbered(3), false, 500, 900, 0));
    assert_eq!(numbering(&gens), Numbering::HighestOldest);
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        want
    );
}

#[test]
fn a_left_generation_that_grew_is_read_on_from_where_it_was_left() {
    let gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 3),
        gen(12, Rank::Numbered(1), false, 2000, 900, 2),
    ];
    let record = [done(&gens[1], 700), done(&gens[0], 500)];
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        vec![(12, 700, true), (20, 500, false)]
    );
    // Compressed later with its growth: read on inside the .gz.
    let mut gz = gens.clone();
    gz[1].gz = true;
    assert_eq!(
        picked(&gz, &to_read(&gz, &record, Known::Finished, |_, _| true)),
        vec![(12, 700, true), (20, 500, false)]
    );
    // A record from before lengths were kept never counts as grown.
    let old = [done(&gens[1], u64::MAX)];
    assert_eq!(
        picked(&gens, &to_read(&gens, &old, Known::Finished, |_, _| true)),
        vec![(20, 0, false)]
    );
}

#[test]
fn a_first_start_reads_only_queue_log_and_a_lost_track_reads_everything() {
    let gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 3),
        gen(11, Rank::Numbered(2), false, 1000, 900, 1),
        gen(12, Rank::Numbered(1), false, 2000, 700, 2),
    ];
    assert_eq!(
        picked(&gens, &to_read(&gens, &[], Known::Nothing, |_, _| true)),
        vec![(20, 0, false)]
    );
    assert_eq!(
        picked(&gens, &to_read(&gens, &[], Known::LostTrack, |_, _| true)),
        vec![(11, 0, false), (12, 0, false), (20, 0, false)]
    );
}

#[test]
fn a_file_being_compressed_is_read_once_uncompressed() {
    let mut twin = gen(13, Rank::Numbered(1), true, 2000, 700, 2);
    twin.id = id(13);
    let gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 3),
        gen(11, Rank::Numbered(2), false, 1000, 900, 1),
        twin,
        gen(12, Rank::Numbered(1), false, 2000, 700, 2),
    ];
    let record = [done(&gens[1], 900)];
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        vec![(12, 0, false), (20, 0, false)]
    );
}

#[test]
fn the_head_is_the_first_line_and_its_time() {
    let (h, t) = head_of(b"1700000000|c|q|a|ENTERQUEUE|||\n1700000001|x");
    assert_eq!(t, Some(1_700_000_000));
    assert_eq!(
        h,
        head_of(b"1700000000|c|q|a|ENTERQUEUE|||\nanything else").0
    );
    assert_ne!(h, head_of(b"1700000000|c|q|a|ENTERQUEUE||1|\n").0);
    assert_eq!(head_of(b"garbage").1, None);
}

#[test]
fn a_generation_that_no_longer_holds_what_was_read_is_read_again_in_doubt() {
    // A power cut took back its tail after it was read to 700, and the writer went on.
    let gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 3),
        gen(12, Rank::Numbered(1), false, 2000, 900, 2),
    ];
    let record = [done(&gens[1], 700)];
    let list = to_read(&gens, &record, Known::Finished, |g, _| g.id.ino != 12);
    assert_eq!(
        list.iter()
            .map(|t| (gens[t.gen].id.ino, t.offset, t.in_doubt))
            .collect::<Vec<_>>(),
        vec![(12, 0, true), (20, 0, false)]
    );
}

#[test]
fn asterisks_sequential_numbering_is_read_from_the_files() {
    // rotatestrategy = sequential: queue_log.1 is older than queue_log.2.
    let gens = vec![
        gen(20, Rank::Live, false, 3000, 500, 3),
        gen(11, Rank::Numbered(1), false, 1000, 900, 1),
        gen(12, Rank::Numbered(2), false, 2000, 700, 2),
        gen(13, Rank::Numbered(3), false, 2500, 700, 2),
    ];
    assert_eq!(numbering(&gens), Numbering::HighestNewest);
    let record = [done(&gens[1], 900)];
    assert_eq!(
        picked(
            &gens,
            &to_read(&gens, &record, Known::Finished, |_, _| true)
        ),
        vec![(12, 0, false), (13, 0, false), (20, 0, false)]
    );
    // One clock step between two rotations outvoted: names still order them.
    let mut stepped = gens.clone();
    stepped.push(gen(14, Rank::Numbered(4), false, 2800, 700, 2));
    stepped[3].first_time = Some(-31_000_000);
    assert_eq!(numbering(&stepped), Numbering::HighestNewest);
    assert_eq!(
        picked(
            &stepped,
            &to_read(&stepped, &record, Known::Finished, |_, _| true)
        ),
        vec![
            (12, 0, false),
            (13, 0, false),
            (14, 0, false),
            (20, 0, false)
        ]
    );
}
