//! The reader's decisions that need no file to make: where reading goes on when the file
//! it had reached no longer holds what was read there, which file the journaled position
//! is in after a restart, and when a file that is no longer queue_log is finished.
//! Which generations come next is [`super::generations`]'s.

/// Where to read from, and up to where the rows read are in doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    /// Rows starting before this offset are read again (0: none).
    pub replay_until: u64,
}

/// `reached`: where reading had got in the file; `holds`: the bytes just before it are
/// still the ones read there (the fingerprint); `len`: the file's length now.
///
/// A file that no longer holds them shrank (a power cut took back what Asterisk never
/// synced, a truncation without a copy) or was rewritten (an editor, `sed -i`): it is
/// read again from the start, and every row up to where reading had got, or up to the
/// file's end if it is longer now (an edit may have moved old rows further on), may be
/// one already shipped: in doubt, resolved with the server, never sent blindly.
pub fn resume_in(reached: u64, holds: bool, len: u64) -> Resume {
    if holds {
        Resume {
            offset: reached,
            replay_until: 0,
        }
    } else {
        Resume {
            offset: 0,
            replay_until: reached.max(len),
        }
    }
}

/// What the file being read may still do, which decides when reading it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// QUEUE_LOG names it.
    Live,
    /// It was QUEUE_LOG, or a rotated file that may still be: a writer not told to
    /// reopen (`logger reload`) appends to it still.
    Renamed,
    /// A copy (copytruncate) or a compressed generation: it never grows.
    Copy,
}

/// At the end of what a file holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtEnd {
    /// Go on waiting for more (the live file; or a last line still without its newline).
    Wait,
    /// Leave it and read the next generation; `partial`: first take an unfinished last
    /// line as it is, since nothing will complete it.
    Finish { partial: bool },
}

/// `partial`: bytes after the last newline; `quiet_ms`: since the file last grew or was
/// seen rotated, whichever is later.
///
/// A rotated file is left as soon as it is read to a line's end: waiting out a grace
/// period there would hold newer generations back while they may be deleted (and a
/// rotated file that grows again is read on from where it was left, see
/// [`super::generations::to_read`]). Only a last line without its newline is waited for,
/// for the grace period, since a writer may be in the middle of it.
pub fn at_end(kind: Kind, partial: bool, quiet_ms: u64, grace_ms: u64) -> AtEnd {
    match kind {
        Kind::Live => AtEnd::Wait,
        Kind::Copy => AtEnd::Finish { partial },
        Kind::Renamed if !partial => AtEnd::Finish { partial: false },
        Kind::Renamed if quiet_ms >= grace_ms => AtEnd::Finish { partial: true },
        Kind::Renamed => AtEnd::Wait,
    }
}

/// A rotated file grew after it was left: say that logrotate's postrotate lacks
/// `logger reload` unless the growth came within the grace period of leaving it (the
/// ordinary gap between the rename and the reload). `since_left_ms`: how long ago it was
/// left in this run (None: before a restart, long ago).
pub fn growth_is_misconfiguration(since_left_ms: Option<u64>, grace_ms: u64) -> bool {
    since_left_ms.is_none_or(|ago| ago >= grace_ms)
}

/// One file the journaled position may be in, as the reader sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// QUEUE_LOG names it.
    pub at_path: bool,
    /// The inode the position was journaled for.
    pub same_id: bool,
    /// Holds, just before the position's offset, the bytes read there (fingerprint).
    pub holds: bool,
    /// Its first line is the first line of the file the position was in.
    pub same_head: bool,
}

/// Where the journaled position is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// QUEUE_LOG is still that file and holds what was read: go on.
    AtPath,
    /// This rotated, copied or compressed file holds it: finish it, then the newer
    /// generations.
    Moved(usize),
    /// QUEUE_LOG is that file (same inode, or the same first line after `sed -i`), but
    /// shorter or rewritten: read it again from the start, in doubt.
    Rewritten,
    /// Nowhere: every generation may hold unread rows; read them all, in doubt.
    Gone,
}

/// Prefers the file QUEUE_LOG names, then a rotated one with the journaled inode, then
/// any that holds the fingerprint (a copy, a compressed generation): a file that holds
/// what was read is where reading goes on. Only then does a QUEUE_LOG that is the same
/// file by inode or by first line count as rewritten.
pub fn locate(candidates: &[Candidate]) -> Found {
    let holding = |c: &&Candidate| c.holds;
    if candidates.iter().any(|c| c.at_path && c.same_id && c.holds) {
        return Found::AtPath;
    }
    let moved = candidates
        .iter()
        .position(|c| !c.at_path && c.same_id && c.holds)
        .or_else(|| candidates.iter().position(|c| !c.at_path && holding(&c)));
    if let Some(i) = moved {
        return Found::Moved(i);
    }
    if candidates
        .iter()
        .any(|c| c.at_path && (c.same_id || c.same_head))
    {
        return Found::Rewritten;
    }
    Found::Gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(at_path: bool, same_id: bool, holds: bool, same_head: bool) -> Candidate {
        Candidate {
            at_path,
            same_id,
            holds,
            same_head,
        }
    }

    #[test]
    fn the_position_is_found_where_the_bytes_read_still_are() {
        // Still QUEUE_LOG.
        assert_eq!(locate(&[cand(true, true, true, true)]), Found::AtPath);
        // Renamed while stopped; QUEUE_LOG is a new file.
        let renamed = [
            cand(true, false, false, false),
            cand(false, true, true, true),
        ];
        assert_eq!(locate(&renamed), Found::Moved(1));
        // copytruncate while stopped: QUEUE_LOG is the same inode, shorter; the copy
        // holds what was read and goes first.
        let copied = [
            cand(true, true, false, true),
            cand(false, false, true, true),
        ];
        assert_eq!(locate(&copied), Found::Moved(1));
        // Compressed (new inode) while stopped, and the renamed one is preferred.
        let both = [
            cand(false, false, true, true),
            cand(false, true, true, true),
        ];
        assert_eq!(locate(&both), Found::Moved(1));
        // A power cut took back its tail; sed -i (new inode, same first line).
        assert_eq!(locate(&[cand(true, true, false, true)]), Found::Rewritten);
        assert_eq!(locate(&[cand(true, false, false, true)]), Found::Rewritten);
        // Deleted: a new QUEUE_LOG with other content.
        assert_eq!(locate(&[cand(true, false, false, false)]), Found::Gone);
        assert_eq!(locate(&[]), Found::Gone);
    }

    #[test]
    fn rotated_files_are_left_at_a_line_end_without_waiting_out_the_grace() {
        assert_eq!(at_end(Kind::Live, false, 60_000, 5_000), AtEnd::Wait);
        assert_eq!(
            at_end(Kind::Renamed, false, 0, 5_000),
            AtEnd::Finish { partial: false }
        );
        assert_eq!(at_end(Kind::Renamed, true, 4_999, 5_000), AtEnd::Wait);
        assert_eq!(
            at_end(Kind::Renamed, true, 5_000, 5_000),
            AtEnd::Finish { partial: true }
        );
        assert_eq!(
            at_end(Kind::Copy, true, 0, 5_000),
            AtEnd::Finish { partial: true }
        );
    }

    #[test]
    fn growth_soon_after_a_rename_is_ordinary_later_it_is_a_misconfiguration() {
        assert!(!growth_is_misconfiguration(Some(2_000), 5_000));
        assert!(growth_is_misconfiguration(Some(5_000), 5_000));
        assert!(growth_is_misconfiguration(None, 5_000));
    }

    #[test]
    fn a_file_that_still_holds_what_was_read_goes_on_where_it_was() {
        assert_eq!(
            resume_in(500, true, 900),
            Resume {
                offset: 500,
                replay_until: 0
            }
        );
    }

    #[test]
    fn a_shorter_or_rewritten_file_is_read_again_in_doubt_up_to_the_furthest_point() {
        assert_eq!(
            resume_in(500, false, 300),
            Resume {
                offset: 0,
                replay_until: 500
            }
        );
        assert_eq!(
            resume_in(500, false, 800),
            Resume {
                offset: 0,
                replay_until: 800
            }
        );
    }
}
