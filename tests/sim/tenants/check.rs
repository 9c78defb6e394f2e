//! What must hold when the split world has drained, per partition (a tenant's target
//! as of one edit, with a server of its own).

use super::{Key, World};
use std::collections::{BTreeSet, HashMap};

impl World {
    /// Every row kept for a partition is on its server exactly once, in file order, or
    /// was dropped with the operator's `--drop-backlog`; nothing else is there (no row
    /// not kept for it, no row of another tenant).
    pub(super) fn check(&self) -> Result<(), String> {
        let mut kept: HashMap<Key, BTreeSet<usize>> = HashMap::new();
        for (&line, routed) in &self.reads {
            for &(key, was_kept) in routed {
                if was_kept {
                    kept.entry(key).or_default().insert(line);
                }
            }
        }
        for (&key, server) in &self.servers {
            let kept = kept.remove(&key).unwrap_or_default();
            let mut last = None;
            for &(_, line) in &server.stored {
                if last.is_some_and(|l| line <= l) {
                    return Err(format!(
                        "{key:?}: line {line} stored after line {}",
                        last.unwrap_or(0)
                    ));
                }
                last = Some(line);
                let ever = self.ever_kept.get(&key);
                if !ever.is_some_and(|e| e.contains(&line)) {
                    return Err(format!("{key:?}: line {line} stored, never kept for it"));
                }
            }
            let stored: BTreeSet<usize> = server.stored.iter().map(|&(_, l)| l).collect();
            let dropped: BTreeSet<usize> = self
                .dropped
                .get(&key)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            let missing: Vec<usize> = kept
                .difference(&stored)
                .filter(|l| !dropped.contains(l))
                .copied()
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "{key:?}: {} rows kept for it never stored and never dropped by the operator, first lines {:?}",
                    missing.len(),
                    &missing[..missing.len().min(8)]
                ));
            }
        }
        Ok(())
    }
}
