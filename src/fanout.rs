//! Which journal slots want each row read, and how sure each can be that the row is new.
//! Pure: the reader calls it between the file and the journal.

use crate::journal::{bit, Spooled, Takeover};
use crate::resync::{takeover_class, TakeoverClass};
use crate::row::Row;
use crate::rules::{Route, Split};

/// One enabled target as the reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lane {
    /// Index in the rules' target list (0 in single-target mode).
    pub index: usize,
    /// Journal slot: the row masks' bit.
    pub slot: usize,
    pub takeover: Takeover,
    /// Its backlog fills its share of the spool (a tenant down for days): rows read now
    /// are not kept for it, so that it never pauses reading for the others.
    pub over_share: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every row read, in order; those no target keeps have an empty `want`. Each takes
    /// a sequence number all the same (`Journal::append`), so that a row read again
    /// after a power cut gets the number it had, whatever is routed, shed or already
    /// stored then.
    pub rows: Vec<Spooled>,
    /// Rows no enabled target wanted: no rule matched, or a disabled target's.
    pub unrouted: u64,
    /// Rows every target that wanted them already holds (below its takeover watermark).
    pub already_stored: u64,
    /// Per lane (in `lanes` order): rows routed to it but not kept, its share being full.
    pub shed: Vec<u64>,
}

/// What the reader knows of a row's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// In the takeover region: an earlier loader may have uploaded it; each target
    /// judges it against its watermark.
    pub in_region: bool,
    /// The replay pass that read it again after the file shrank or was rewritten (power
    /// cut, `sed -i`, an editor, truncation without a copy; 0: none): it may have been
    /// shipped already, so it is resolved with checkRow, never sent blindly.
    pub replay: u64,
}

/// `rows` as read, each with whether it lies in the takeover region. Without a split
/// (single-target mode) every row goes to every lane.
pub fn plan(split: Option<&Split>, lanes: &[Lane], rows: Vec<(Row, Origin)>) -> Plan {
    let mut out = Plan {
        shed: vec![0; lanes.len()],
        ..Plan::default()
    };
    out.rows.reserve(rows.len());
    for (row, origin) in rows {
        let kept = out.rows.len();
        out.plan_row(split, lanes, row, origin);
        if out.rows.len() == kept {
            out.rows.push(Spooled::not_kept());
        }
    }
    out
}

impl Plan {
    /// Pushes `row` with the targets that keep it, or counts why none does.
    fn plan_row(&mut self, split: Option<&Split>, lanes: &[Lane], row: Row, origin: Origin) {
        let out = self;
        let in_region = origin.in_region;
        // Which lanes want it, by rule index (None: every lane).
        let (row, only): (Row, Option<usize>) = match split.map(|s| s.route(&row)) {
            None | Some(Route::Everyone) => (row, None),
            Some(Route::To(i, stripped)) => (stripped.map_or(row, |r| *r), Some(i)),
            Some(Route::Disabled(_) | Route::Nowhere) => {
                out.unrouted += 1;
                return;
            }
        };
        let mut targets = lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| only.is_none_or(|i| l.index == i))
            .peekable();
        if targets.peek().is_none() {
            out.unrouted += 1;
            return;
        }
        let mut shed = false;
        let (mut want, mut doubt, mut takeover) = (0, 0, 0);
        for (n, lane) in targets {
            if lane.over_share {
                out.shed[n] += 1;
                shed = true;
                continue;
            }
            let b = bit(lane.slot);
            let class = match (in_region, lane.takeover) {
                (false, _) | (true, Takeover::Done(None)) => TakeoverClass::New,
                (true, Takeover::Done(Some(w))) => takeover_class(row.time, w),
                (true, Takeover::Pending) => {
                    takeover |= b;
                    TakeoverClass::New
                }
            };
            match class {
                TakeoverClass::AlreadyStored => continue,
                TakeoverClass::InDoubt => doubt |= b,
                TakeoverClass::New => {}
            }
            if origin.replay != 0 {
                doubt |= b;
            }
            want |= b;
        }
        if want == 0 {
            if !shed {
                out.already_stored += 1;
            }
            return;
        }
        out.rows.push(Spooled {
            row,
            want,
            doubt,
            takeover,
            replay: origin.replay,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: Origin = Origin {
        in_region: true,
        replay: 0,
    };
    use crate::rules::{How, Matcher, Rule, Target};

    fn row(time: i64, queue: &str, agent: &str) -> Row {
        Row::new(time, "c", queue, agent, "V", [""; 5])
    }

    fn split() -> Split {
        let t = |n: &str, disabled| Target {
            name: n.into(),
            host: n.into(),
            disabled,
            ..Target::default()
        };
        let r = |target: usize, token: &str, strip| Rule {
            name: token.into(),
            target,
            queue: Some(Matcher {
                how: How::Prefix,
                tokens: vec![token.into()],
            }),
            agent: None,
            strip,
            line: 1,
        };
        Split {
            targets: vec![t("a", false), t("b", false), t("off", true)],
            rules: vec![r(0, "a-", true), r(1, "b-", false), r(2, "off-", false)],
        }
    }

    #[test]
    fn rows_go_to_their_tenant_stripped_and_none_rows_to_all() {
        // Slots need not follow the file's order.
        let lanes = [
            Lane {
                index: 0,
                slot: 3,
                takeover: Takeover::Done(None),
                over_share: false,
            },
            Lane {
                index: 1,
                slot: 0,
                takeover: Takeover::Done(None),
                over_share: false,
            },
        ];
        let p = plan(
            Some(&split()),
            &lanes,
            vec![
                (row(1, "a-sales", "x"), Origin::default()),
                (row(2, "b-sales", "x"), Origin::default()),
                (row(3, "NONE", "NONE"), Origin::default()),
                (row(4, "off-1", "x"), Origin::default()),
                (row(5, "zzz", "x"), Origin::default()),
            ],
        );
        assert_eq!(p.unrouted, 2);
        let got: Vec<(String, u64)> = p
            .rows
            .iter()
            .filter(|s| s.want != 0)
            .map(|s| (s.row.queue().to_owned(), s.want))
            .collect();
        assert_eq!(
            got,
            [
                ("sales".to_string(), 1 << 3),
                ("b-sales".to_string(), 1),
                ("NONE".to_string(), 1 << 3 | 1)
            ]
        );
    }

    #[test]
    fn each_target_judges_the_region_against_its_own_watermark() {
        let lanes = [
            Lane {
                index: 0,
                slot: 0,
                takeover: Takeover::Done(Some(10)),
                over_share: false,
            },
            Lane {
                index: 1,
                slot: 1,
                takeover: Takeover::Pending,
                over_share: false,
            },
            Lane {
                index: 2,
                slot: 2,
                takeover: Takeover::Done(None),
                over_share: false,
            },
        ];
        let p = plan(
            None,
            &lanes,
            vec![
                (row(9, "q", "a"), REGION),
                (row(10, "q", "a"), REGION),
                (row(11, "q", "a"), REGION),
                (row(5, "q", "a"), Origin::default()),
            ],
        );
        let masks: Vec<(i64, u64, u64, u64)> = p
            .rows
            .iter()
            .map(|s| (s.row.time, s.want, s.doubt, s.takeover))
            .collect();
        assert_eq!(
            masks,
            [
                (9, 0b110, 0, 0b010),
                (10, 0b111, 0b001, 0b010),
                (11, 0b111, 0, 0b010),
                (5, 0b111, 0, 0)
            ]
        );
        let only_first = plan(None, &lanes[..1], vec![(row(9, "q", "a"), REGION)]);
        assert_eq!(only_first.already_stored, 1);
        assert_eq!(only_first.rows.len(), 1, "every row read takes its number");
        assert_eq!(only_first.rows[0].want, 0);
    }

    #[test]
    fn a_lane_over_its_share_gets_no_rows_and_they_are_counted() {
        let lanes = [
            Lane {
                index: 0,
                slot: 0,
                takeover: Takeover::Done(None),
                over_share: true,
            },
            Lane {
                index: 1,
                slot: 1,
                takeover: Takeover::Done(None),
                over_share: false,
            },
        ];
        let rows = (0..5)
            .map(|i| (row(i, "q", "a"), Origin::default()))
            .collect();
        let p = plan(None, &lanes, rows);
        assert_eq!(p.shed, vec![5, 0]);
        assert!(p.rows.iter().all(|r| r.want == 1 << 1), "{:?}", p.rows);
        assert_eq!((p.rows.len(), p.already_stored, p.unrouted), (5, 0, 0));
    }
}
