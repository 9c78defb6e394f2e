//! What must hold when a schedule has drained.

use super::World;
use std::collections::HashMap;

impl World {
    /// Every row the queue_log holds at the end is stored; no row is stored more often
    /// than it was ever written (rows a power cut or a rewrite took back may or may not
    /// have been shipped, but never twice); stored rows keep the file's order.
    pub(super) fn check(&self) -> Result<(), String> {
        let mut left: HashMap<u64, Vec<usize>> = HashMap::new();
        for (line, r) in self.file.iter().enumerate().rev() {
            left.entry(r.identity()).or_default().push(line);
        }
        let mut stored: HashMap<u64, usize> = HashMap::new();
        let mut last = None;
        // Copies are counted by identity (identical rows are one row to the protocol);
        // order is checked on the line each stored copy was read from.
        for (row, line) in &self.server.stored {
            *stored.entry(row.identity()).or_default() += 1;
            left.get_mut(&row.identity())
                .and_then(|v| v.pop())
                .ok_or_else(|| format!("stored more copies than were written: {row:?}"))?;
            let line = *line;
            if last.is_some_and(|l| line < l) {
                return Err(format!(
                    "line {line} stored after line {}",
                    last.unwrap_or(0)
                ));
            }
            last = Some(line);
        }
        let mut on_disk: HashMap<u64, usize> = HashMap::new();
        for &line in &self.disk {
            *on_disk.entry(self.file[line].identity()).or_default() += 1;
        }
        let mut lost: Vec<usize> = self
            .disk
            .iter()
            .copied()
            .filter(|&line| {
                let id = self.file[line].identity();
                stored.get(&id).copied().unwrap_or(0) < on_disk[&id]
            })
            .collect();
        if !lost.is_empty() {
            lost.dedup();
            return Err(format!(
                "{} of {} rows in the queue_log never stored ({} power cuts), first lines {:?}",
                lost.len(),
                self.disk.len(),
                self.cuts,
                &lost[..lost.len().min(8)]
            ));
        }
        Ok(())
    }
}
