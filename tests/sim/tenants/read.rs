//! The reader of the split world: each read asks the real share decision
//! (`machine::shares`) whether to read and for whom rows are kept, routes the rows with
//! the real rules and fan-out (`fanout::plan`), and spools them in one commit. On the
//! way it checks what an operator is promised about shares.

use super::{trace, Key, World};
use crate::journal::SpoolRow;
use qlship::fanout::{self, Lane, Origin};
use qlship::journal::Takeover;
use qlship::machine::shares::{Load, Notice};
use std::collections::HashSet;

impl World {
    /// Bytes of the spool: each row once, however many targets want it.
    fn spool_bytes(&self) -> u64 {
        let slots = &self.journal.now.slots;
        let lines: HashSet<usize> = slots
            .iter()
            .flat_map(|s| s.st.spool.values().map(|r| r.line))
            .collect();
        lines.iter().map(|&l| self.bytes[l]).sum()
    }

    fn backlog_bytes(&self, tenant: usize) -> u64 {
        let spool = &self.journal.now.slots[tenant].st.spool;
        spool.values().map(|r| self.bytes[r.line]).sum()
    }

    pub(super) fn read(&mut self) -> Result<(), String> {
        let pos = self.journal.now.pos;
        if pos >= self.file.len() {
            return Ok(());
        }
        let p = self.proc.as_ref().expect("up");
        let enabled = p.enabled.clone();
        let loads: Vec<Load> = enabled
            .iter()
            .map(|&t| Load {
                backlog: self.backlog_bytes(t),
                failing: p.tenants[t].as_ref().expect("enabled").failing,
            })
            .collect();
        let spool_bytes = self.spool_bytes();
        let share = p.shares.share();
        let p = self.proc.as_mut().expect("up");
        let (verdict, notices) = p.shares.decide(&loads, spool_bytes);
        for notice in notices {
            trace(self.now, &format!("reader: {notice:?}"));
            if let Notice::Room { target, not_kept } = notice {
                let shed = std::mem::take(&mut p.shed_since[target]);
                if not_kept != shed {
                    return Err(format!(
                        "tenant {} back under its share: announced {not_kept} rows not kept, {shed} were not",
                        enabled[target]
                    ));
                }
            }
        }
        p.paused = verdict.pause;
        if verdict.pause {
            // Reading waits only for tenants that are not cut off and hold their shares
            // between them (the file is then the buffer), never for one that is down.
            let cut_off = |l: &Load| l.failing && l.backlog >= share;
            let others: Vec<&Load> = loads.iter().filter(|l| !cut_off(l)).collect();
            let held: u64 = others.iter().map(|l| l.backlog).sum();
            if held < others.len() as u64 * share {
                return Err(format!(
                    "at {} ms reading paused for everyone, but the tenants not cut off hold {held} bytes, less than their shares ({share} bytes each): loads {loads:?}, spool {spool_bytes} bytes",
                    self.now
                ));
            }
            self.report.pauses += 1;
            trace(self.now, &format!("reader paused: loads {loads:?}"));
            return Ok(());
        }
        let slots = &self.journal.now.slots;
        let lanes: Vec<Lane> = enabled
            .iter()
            .zip(&verdict.over_share)
            .map(|(&t, &over_share)| Lane {
                index: t,
                slot: t,
                takeover: slots[t]
                    .st
                    .takeover
                    .map_or(Takeover::Pending, Takeover::Done),
                over_share,
            })
            .collect();
        let keys: Vec<Key> = enabled
            .iter()
            .map(|&t| slots[t].key.expect("bound"))
            .collect();
        let split = self.split();
        let end = self.file.len().min(pos + 1 + self.rng.below(40) as usize);
        let mut spooled = vec![Vec::new(); self.p.tenants];
        let mut record = Vec::new();
        let p = self.proc.as_mut().expect("up");
        for line in pos..end {
            let row = (self.file[line].clone(), Origin::default());
            let plan = fanout::plan(Some(&split), &lanes, vec![row]);
            let mut routed = Vec::new();
            for (n, &shed) in plan.shed.iter().enumerate() {
                if shed == 0 {
                    continue;
                }
                // Cut off only a tenant that fails and holds its whole share, and only
                // once that was announced.
                let l = loads[n];
                if !(l.failing && l.backlog >= share) || p.shares.not_kept(n).is_none() {
                    return Err(format!(
                        "line {line} not kept for tenant {} (load {l:?}, share {share}, announced: {})",
                        enabled[n],
                        p.shares.not_kept(n).is_some()
                    ));
                }
                p.shed_since[n] += shed;
                self.report.not_kept += shed;
                routed.push((keys[n], false));
            }
            p.shares.shed(&plan.shed);
            for r in plan.rows {
                for (n, &t) in enabled.iter().enumerate() {
                    let bit = 1u64 << t;
                    if r.want & bit == 0 {
                        continue;
                    }
                    routed.push((keys[n], true));
                    spooled[t].push(SpoolRow {
                        row: r.row.clone(),
                        line,
                        doubt: r.doubt & bit != 0,
                        takeover: r.takeover & bit != 0,
                        replay: 0,
                    });
                }
            }
            record.push((line, routed));
        }
        self.journal.read(end, spooled);
        for (line, routed) in &record {
            for &(key, _) in routed.iter().filter(|(_, kept)| *kept) {
                self.ever_kept.entry(key).or_default().insert(*line);
            }
        }
        self.reads.extend(record);
        if let Some(p) = self.proc.as_mut() {
            for t in p.tenants.iter_mut().flatten() {
                t.woken = true;
            }
        }
        self.maybe_crash();
        Ok(())
    }
}
