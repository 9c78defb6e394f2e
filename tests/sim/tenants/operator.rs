//! The operator of the split world: at restarts a target is edited (a new host, its rule
//! disabled or enabled again), and the real `machine::bind` decides whether qlship
//! starts with the journal as it is, refuses (naming each stranded backlog; the
//! operator then puts the target back or says `--drop-backlog`), or drops, counted.

use super::{trace, Conf, Key, Proc, Tenant, World, ROW_BYTES};
use crate::journal::State;
use crate::world::uploader;
use qlship::machine::bind::{decide, Binding, Journaled};
use qlship::machine::shares::Shares;

impl World {
    /// The operator may have edited a target; `machine::bind` decides whether qlship
    /// starts with the journal as it is.
    pub(super) fn boot(&mut self) -> Result<(), String> {
        if !self.calm() && self.now > 0 && self.rng.chance(self.p.edit) {
            self.edit();
        }
        let journaled: Vec<Journaled> = self
            .journal
            .now
            .slots
            .iter()
            .filter_map(|s| {
                let key = self.key_name(s.key?);
                let backlog = s.st.spool.len() as u64;
                Some(Journaled { key, backlog })
            })
            .collect();
        let keys: Vec<Option<Key>> = (0..self.p.tenants).map(|t| self.configured(t)).collect();
        let configured: Vec<String> = keys.iter().flatten().map(|&k| self.key_name(k)).collect();
        match decide(&journaled, &configured, self.drop_backlog) {
            Binding::Refuse { stranded } => self.refused(&keys, stranded),
            Binding::Start { freed } => {
                self.start(&keys, freed)?;
                Ok(())
            }
        }
    }

    /// A new host for a tenant's target, or its rule disabled or enabled again (as a
    /// new partition: a server of its own).
    fn edit(&mut self) {
        let t = self.rng.below(self.p.tenants as u64) as usize;
        let conf = &mut self.config[t];
        if conf.disabled || !self.rng.chance(300) {
            conf.version += 1;
            conf.disabled = false;
        } else {
            conf.disabled = true;
        }
        trace(self.now, &format!("operator edits tenant {t}: {conf:?}"));
        let key = (t, self.config[t].version);
        self.server_for(key);
    }

    /// Exit 2: every slot whose partition is no longer configured and still has rows is
    /// named with its backlog, and nothing is dropped. The operator puts the target back
    /// or says `--drop-backlog`.
    fn refused(
        &mut self,
        keys: &[Option<Key>],
        stranded: Vec<(String, u64)>,
    ) -> Result<(), String> {
        self.report.refusals += 1;
        let slots = &self.journal.now.slots;
        let expected: Vec<(String, u64)> = slots
            .iter()
            .zip(keys)
            .filter(|(s, k)| s.key.is_some() && s.key != **k && !s.st.spool.is_empty())
            .map(|(s, _)| {
                (
                    self.key_name(s.key.expect("bound")),
                    s.st.spool.len() as u64,
                )
            })
            .collect();
        if stranded != expected {
            return Err(format!(
                "refused naming {stranded:?}, but the backlogs the edit strands are {expected:?}"
            ));
        }
        trace(self.now, &format!("start refused: {stranded:?}"));
        if self.rng.chance(self.p.drop) {
            self.drop_backlog = true;
        } else {
            for s in slots.iter().filter(|s| !s.st.spool.is_empty()) {
                let (t, version) = s.key.expect("a backlog has a partition");
                self.config[t] = Conf {
                    version,
                    disabled: false,
                };
            }
        }
        self.restart_at = self.now + 1 + self.rng.below(3_000);
        Ok(())
    }

    fn start(&mut self, keys: &[Option<Key>], freed: Vec<(String, u64)>) -> Result<(), String> {
        for (name, rows) in freed {
            let slots = &self.journal.now.slots;
            let Some(slot) = slots
                .iter()
                .find(|s| s.key.is_some_and(|k| self.key_name(k) == name))
            else {
                return Err(format!("freed {name}, which the journal does not hold"));
            };
            let lines: Vec<usize> = slot.st.spool.values().map(|r| r.line).collect();
            if rows != lines.len() as u64 {
                return Err(format!(
                    "dropping {name}: told {rows} rows, its backlog is {}",
                    lines.len()
                ));
            }
            if rows > 0 {
                if !self.drop_backlog {
                    return Err(format!(
                        "dropped {rows} rows of {name} without --drop-backlog"
                    ));
                }
                trace(self.now, &format!("dropped {rows} rows of {name}"));
                self.report.drops += 1;
                let key = slot.key.expect("bound");
                self.dropped.entry(key).or_default().extend(lines);
            }
        }
        self.journal.bind(keys);
        self.journal.open();
        self.drop_backlog = false;
        let spool_max = self.p.share_rows * ROW_BYTES * self.p.tenants as u64;
        let enabled: Vec<usize> = (0..self.p.tenants).filter(|&t| keys[t].is_some()).collect();
        let mut tenants = Vec::new();
        for (t, key) in keys.iter().enumerate() {
            let st = self.journal.now.slots[t].st.clone();
            tenants.push(key.map(|_| self.uploader(&st)));
        }
        self.proc = Some(Proc {
            boot: self.now,
            shares: Shares::new(spool_max, enabled.len()),
            tenants,
            shed_since: vec![0; enabled.len()],
            enabled,
            paused: false,
        });
        Ok(())
    }

    fn uploader(&mut self, st: &State) -> Tenant {
        let seed = self.rng.next();
        Tenant {
            core: uploader(self.p.batch_rows, self.p.settle, seed, st),
            busy: None,
            waiting: None,
            drained: false,
            failing: false,
            woken: false,
        }
    }
}
