//! Whether qlship may start with the targets configured now (issue 15, case 7): a
//! target whose URL, host, context or token was edited, or whose rule was disabled or
//! removed, is a new target to the journal (its partition key changed), and the old
//! one's backlog would be dropped with its slot. That is never done silently: qlship
//! refuses to start (exit 2, naming each such target and its backlog) unless the
//! operator says `--drop-backlog`, and a drop is counted.
//!
//! Pure: `daemon::start` and the simulator (`tests/sim/tenants.rs`) hand in what the
//! journal holds and what is configured, and act on the answer (`Journal::bind` frees
//! the slots).

/// A target the journal knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journaled {
    /// Its partition key (URL, context, token).
    pub key: String,
    /// Rows it still wants (spooled, not acknowledged).
    pub backlog: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Start. `freed`: journaled targets no longer configured, each with the rows
    /// dropped with it (0 unless the operator said `--drop-backlog`).
    Start { freed: Vec<(String, u64)> },
    /// Do not start: these targets are no longer configured and still have rows to
    /// upload (key, rows).
    Refuse { stranded: Vec<(String, u64)> },
}

/// `configured`: the partition keys of the enabled targets.
pub fn decide(journaled: &[Journaled], configured: &[String], drop_backlog: bool) -> Binding {
    let gone = journaled.iter().filter(|t| !configured.contains(&t.key));
    let freed: Vec<(String, u64)> = gone.map(|t| (t.key.clone(), t.backlog)).collect();
    if !drop_backlog && freed.iter().any(|(_, rows)| *rows > 0) {
        let stranded = freed.into_iter().filter(|(_, rows)| *rows > 0).collect();
        return Binding::Refuse { stranded };
    }
    Binding::Start { freed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journaled(key: &str, backlog: u64) -> Journaled {
        Journaled {
            key: key.into(),
            backlog,
        }
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_edited_target_with_a_backlog_refuses_to_start_naming_it() {
        let j = [journaled("a", 0), journaled("b", 12), journaled("c", 3)];
        assert_eq!(
            decide(&j, &keys(&["a", "b2", "c"]), false),
            Binding::Refuse {
                stranded: vec![("b".into(), 12)]
            }
        );
        // A disabled rule's target is no longer among the configured keys either.
        assert_eq!(
            decide(&j, &keys(&["b"]), false),
            Binding::Refuse {
                stranded: vec![("c".into(), 3)]
            }
        );
    }

    #[test]
    fn drop_backlog_drops_it_counted() {
        let j = [journaled("a", 0), journaled("b", 12)];
        assert_eq!(
            decide(&j, &keys(&["a", "b2"]), true),
            Binding::Start {
                freed: vec![("b".into(), 12)]
            }
        );
    }

    #[test]
    fn an_edited_target_without_a_backlog_starts_and_only_gone_targets_are_freed() {
        let j = [journaled("a", 5), journaled("b", 0)];
        assert_eq!(
            decide(&j, &keys(&["a", "b2"]), false),
            Binding::Start {
                freed: vec![("b".into(), 0)]
            }
        );
        assert_eq!(
            decide(&j, &keys(&["a", "b"]), false),
            Binding::Start { freed: vec![] }
        );
    }
}
