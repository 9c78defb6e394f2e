//! Journal slots and the targets bound to them: which configured target (by partition
//! key) owns which bit of the spool's masks, and what happens to the rows of one that
//! is no longer configured.

use super::*;

/// Targets no longer configured, with the rows they still wanted.
pub type Dropped = Vec<(String, u64)>;

impl Journal {
    /// The targets the journal knows, with the rows each still wants (what
    /// `machine::bind::decide` judges before [`Journal::bind`] may free a slot).
    pub fn journaled(&self) -> Vec<crate::machine::bind::Journaled> {
        let meta = self.meta();
        let known = meta.targets.iter().filter_map(|t| {
            let key = t.key.clone()?;
            let backlog = t.pending_rows;
            Some(crate::machine::bind::Journaled { key, backlog })
        });
        known.collect()
    }

    /// Matches the configured targets (by partition key) with journal slots: a known key
    /// keeps its slot and cursor, a new one gets a free slot (its takeover pending), and
    /// a slot whose key is no longer configured is freed and its bit cleared from every
    /// spooled row (only once `machine::bind::decide` said to start: it refuses to drop
    /// a backlog unless the operator said `--drop-backlog`). Returns the slot of each key, and each dropped key with the number
    /// of rows it still wanted.
    pub fn bind(&self, keys: &[String]) -> Result<(Vec<usize>, Dropped), JournalError> {
        let meta = self.meta();
        let gone: Vec<usize> = meta
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.key.as_ref().is_some_and(|k| !keys.contains(k)))
            .map(|(i, _)| i)
            .collect();
        let gone_mask = gone.iter().fold(0u64, |m, &i| m | bit(i));
        let mut dropped = Vec::new();
        let mut slots = Vec::new();
        self.commit(|m, ops| {
            // A target bound afresh may be one just edited (another name for the same
            // server): rows read again that an earlier binding may have sent there are
            // in doubt for it too.
            let reread_doubt_below = m.targets.iter().map(|t| t.reread_doubt_below).max();
            let fresh = |key: &String| TargetMeta {
                reread_doubt_below: reread_doubt_below.unwrap_or(0),
                ..TargetMeta::new(Some(key.clone()))
            };
            let mut edits = Vec::new();
            if gone_mask != 0 {
                for kv in self.db.scan_prefix(b"s") {
                    let (k, v) = kv?;
                    let chunk = chunk_key_of(&k)?;
                    let rows = scan_chunk(chunk, &v)?;
                    if rows.iter().all(|e| e.want & gone_mask == 0) {
                        continue;
                    }
                    let keep = !gone_mask;
                    rewrite_chunk(m, ops, chunk, &v, &rows, |e| {
                        [e.want & keep, e.doubt & keep, e.takeover & keep, e.replay]
                    });
                }
                for &i in &gone {
                    let t = &mut m.targets[i];
                    dropped.push((t.key.clone().unwrap_or_default(), t.pending_rows));
                    // A freed slot keeps its bound for whoever binds next (the target
                    // may come back after a second cut, before the reader is past it).
                    *t = TargetMeta {
                        reread_doubt_below: t.reread_doubt_below,
                        ..TargetMeta::new(None)
                    };
                    edits.push(RingEdit {
                        slot: i,
                        add: Vec::new(),
                        reset: true,
                    });
                }
            }
            for key in keys {
                let slot = match m.targets.iter().position(|t| t.key.as_ref() == Some(key)) {
                    Some(i) => i,
                    None => match m.targets.iter().position(|t| t.key.is_none()) {
                        Some(free) => {
                            m.targets[free] = fresh(key);
                            free
                        }
                        None if m.targets.len() < crate::rules::MAX_TARGETS => {
                            m.targets.push(fresh(key));
                            m.targets.len() - 1
                        }
                        None => {
                            return Err(JournalError::Corrupt(format!(
                                "more than {} targets",
                                crate::rules::MAX_TARGETS
                            )))
                        }
                    },
                };
                slots.push(slot);
            }
            Ok(edits)
        })?;
        if gone_mask != 0 {
            self.sync()?;
        }
        Ok((slots, dropped))
    }

    pub fn set_takeover(&self, slot: usize, t: Takeover) -> Result<(), JournalError> {
        self.commit(|m, _| {
            m.targets[slot].takeover = t;
            Ok(Vec::new())
        })
    }
}
