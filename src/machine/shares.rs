//! Each target's share of the spool in split mode (issue 15, case 7): a tenant whose
//! server is down for days must not fill the shared `--spool-max` and so pause reading
//! for every other tenant.
//!
//! Each of `n` targets owns `spool_max / n` bytes. A target that is failing and whose
//! backlog fills its share is *over its share*: rows read from then on are not kept for
//! it (they will be missing on its server), and that is said loudly, once when it
//! happens and once, with the count, when it has room again. A target that answers is
//! never cut short, however far behind (a catch-up, a burst): then the spool fills and
//! reading pauses for everyone, the file being the buffer.
//!
//! Reading pauses only when the spool is full with what targets within their shares
//! hold: the bytes an over-share target holds beyond its share (a read that landed just
//! before it went over) are left out of the total, so they can never pause the others.
//! They cannot grow either: no row is kept for that target any more.
//!
//! Pure: the reader (`daemon::read`) and the simulator (`tests/sim/tenants.rs`) hand in
//! each target's backlog and whether it is failing, and act on the verdict and notices.

/// One target's load as the reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Bytes of the spooled rows it still wants.
    pub backlog: u64,
    /// Its last request failed.
    pub failing: bool,
}

/// What the reader does with its next read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Per target (in the order of the loads): rows read now are not kept for it.
    pub over_share: Vec<bool>,
    /// The spool is full with the backlogs of targets within their shares: nothing is
    /// read for anyone until they catch up.
    pub pause: bool,
}

/// What the operator must be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The target's backlog fills its share (`share` bytes): rows read from now on are
    /// not kept for it and will be missing on its server; the others go on.
    Full { target: usize, share: u64 },
    /// The target is back under its share: rows are kept for it again; `not_kept` rows
    /// read meanwhile were not, and are missing on its server.
    Room { target: usize, not_kept: u64 },
}

/// The shares of one run of the reader, with the rows not kept for each target since
/// it went over its share.
#[derive(Debug)]
pub struct Shares {
    spool_max: u64,
    /// Per target: `Some(rows not kept)` while it is over its share (announced).
    not_kept: Vec<Option<u64>>,
}

impl Shares {
    pub fn new(spool_max: u64, targets: usize) -> Self {
        Shares {
            spool_max,
            not_kept: vec![None; targets],
        }
    }

    /// Each target's share of `--spool-max`, bytes.
    pub fn share(&self) -> u64 {
        self.spool_max / self.not_kept.len().max(1) as u64
    }

    /// The verdict for the next read, given each target's load (one per target, in the
    /// order given to [`Shares::new`]) and the bytes the spool holds (a row wanted by
    /// several targets counts once), and what to announce.
    pub fn decide(&mut self, loads: &[Load], spool_bytes: u64) -> (Verdict, Vec<Notice>) {
        assert_eq!(loads.len(), self.not_kept.len(), "one load per target");
        let share = self.share();
        let several = loads.len() > 1;
        let over_share: Vec<bool> = loads
            .iter()
            .map(|l| several && l.failing && l.backlog >= share)
            .collect();
        let beyond: u64 = loads
            .iter()
            .zip(&over_share)
            .filter(|(_, &over)| over)
            .map(|(l, _)| l.backlog - share)
            .sum();
        let pause = spool_bytes >= self.spool_max.saturating_add(beyond);
        let mut notices = Vec::new();
        for (target, (&over, kept)) in over_share.iter().zip(&mut self.not_kept).enumerate() {
            match (over, *kept) {
                (true, None) => {
                    *kept = Some(0);
                    notices.push(Notice::Full { target, share });
                }
                (false, Some(not_kept)) => {
                    *kept = None;
                    notices.push(Notice::Room { target, not_kept });
                }
                _ => {}
            }
        }
        (Verdict { over_share, pause }, notices)
    }

    /// Rows of the last read not kept, per target (`fanout::Plan::shed`).
    pub fn shed(&mut self, rows: &[u64]) {
        for (kept, &n) in self.not_kept.iter_mut().zip(rows) {
            if let Some(count) = kept {
                *count += n;
            }
        }
    }

    /// Rows not kept for `target` since it went over its share (None: it is not).
    pub fn not_kept(&self, target: usize) -> Option<u64> {
        self.not_kept[target]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Load = Load {
        backlog: 0,
        failing: false,
    };

    fn dead(backlog: u64) -> Load {
        Load {
            backlog,
            failing: true,
        }
    }

    #[test]
    fn a_dead_tenant_over_its_share_is_cut_off_loudly_and_the_others_read_on() {
        let mut s = Shares::new(3_000, 3);
        let (v, n) = s.decide(&[dead(999), LIVE, LIVE], 999);
        assert_eq!((v.over_share, v.pause, n), (vec![false; 3], false, vec![]));
        let (v, n) = s.decide(&[dead(1_000), LIVE, LIVE], 1_000);
        assert_eq!(v.over_share, [true, false, false]);
        assert!(!v.pause);
        assert_eq!(
            n,
            [Notice::Full {
                target: 0,
                share: 1_000
            }]
        );
        s.shed(&[7, 0, 0]);
        s.shed(&[5, 0, 0]);
        assert_eq!(s.not_kept(0), Some(12));
        // Said once, not at every read.
        assert_eq!(s.decide(&[dead(1_000), LIVE, LIVE], 1_000).1, []);
        // It answers again: rows are kept for it, and the count of those that were not
        // is told.
        let (v, n) = s.decide(&[LIVE, LIVE, LIVE], 1_000);
        assert_eq!(v.over_share, [false; 3]);
        assert_eq!(
            n,
            [Notice::Room {
                target: 0,
                not_kept: 12
            }]
        );
        assert_eq!(s.not_kept(0), None);
    }

    #[test]
    fn a_target_that_answers_is_never_cut_short_and_a_full_spool_pauses_everyone() {
        let mut s = Shares::new(2_000, 2);
        let behind = Load {
            backlog: 2_000,
            failing: false,
        };
        let (v, n) = s.decide(&[behind, LIVE], 2_000);
        assert_eq!(
            (v.over_share, v.pause, n),
            (vec![false, false], true, vec![])
        );
    }

    #[test]
    fn what_a_tenant_over_its_share_holds_beyond_it_never_pauses_the_others() {
        // The dead tenant's last read went 400 bytes over its share before it was cut
        // off; the live one is within its share: the spool is at the cap, but only
        // because of the dead one.
        let mut s = Shares::new(2_000, 2);
        let live = Load {
            backlog: 900,
            failing: false,
        };
        let (v, _) = s.decide(&[dead(1_400), live], 2_300);
        assert_eq!((v.over_share, v.pause), (vec![true, false], false));
        // The live one fills its own share too: now it is its backlog that pauses.
        let live = Load {
            backlog: 1_000,
            failing: false,
        };
        let (v, _) = s.decide(&[dead(1_400), live], 2_400);
        assert_eq!((v.over_share, v.pause), (vec![true, false], true));
    }

    #[test]
    fn a_single_target_has_the_whole_spool_and_is_never_cut_off() {
        let mut s = Shares::new(1_000, 1);
        let (v, n) = s.decide(&[dead(5_000)], 999);
        assert_eq!((v.over_share, v.pause, n), (vec![false], false, vec![]));
        assert!(s.decide(&[dead(5_000)], 1_000).0.pause);
    }
}
