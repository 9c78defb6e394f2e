//! Feedback actions' once-only records: a container's id is journaled, and synced, before
//! its first byte goes to Asterisk, and its result after, so that no action runs twice.

use super::{unix_now_ms, Journal, JournalError};

/// Feedback containers are remembered under `f` + id: the mark that a container was
/// started is durable before its first byte goes to Asterisk, so a container never runs
/// twice, whatever crashes; its result is kept until a `checkFb` carrying it was
/// accepted, then the id alone is kept for [`FB_REMEMBER_MS`] against resends.
const FB_RUNNING: u8 = 1;
const FB_DONE: u8 = 2;
const FB_REPORTED: u8 = 3;
pub const FB_REMEMBER_MS: u64 = 24 * 3600 * 1000;
/// What a container that was running when qlship died is reported as.
pub const FB_INTERRUPTED: &str =
    "interrupted: qlship stopped while running it; not run again, check the PBX";

/// `scope` keeps the ids of different QueueMetrics servers apart: "" in single-target
/// mode (the key journals always had), the target's key and a separator otherwise.
fn fb_key(scope: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + id.len() + 1);
    k.push(b'f');
    k.extend_from_slice(scope.as_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The feedback scope of a target with partition key `key`.
pub fn fb_scope(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}\u{1f}")
    }
}

fn fb_value(state: u8, at_ms: u64, ok: bool, text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + text.len());
    v.push(state);
    v.extend_from_slice(&at_ms.to_be_bytes());
    v.push(u8::from(ok));
    v.extend_from_slice(text.as_bytes());
    v
}

struct FbRecord {
    id: String,
    state: u8,
    at_ms: u64,
    ok: bool,
    text: String,
}

impl Journal {
    fn fb_records(&self, scope: &str) -> Result<Vec<FbRecord>, JournalError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(fb_key(scope, "")) {
            let (k, v) = kv?;
            if v.len() < 10 {
                continue;
            }
            out.push(FbRecord {
                id: String::from_utf8_lossy(&k[1 + scope.len()..]).into_owned(),
                state: v[0],
                at_ms: u64::from_be_bytes(v[1..9].try_into().expect("8 bytes")),
                ok: v[9] == 1,
                text: String::from_utf8_lossy(&v[10..]).into_owned(),
            });
        }
        Ok(out)
    }

    fn fb_put(
        &self,
        scope: &str,
        records: &[(String, Vec<u8>)],
        remove: &[String],
    ) -> Result<(), JournalError> {
        self.commit(|_, ops| {
            for (id, value) in records {
                ops.insert(fb_key(scope, id), value.clone());
            }
            for id in remove {
                ops.remove(fb_key(scope, id));
            }
            Ok(Vec::new())
        })?;
        self.sync()
    }

    /// Whether this container id was ever started (and not yet forgotten).
    pub fn fb_seen(&self, scope: &str, id: &str) -> Result<bool, JournalError> {
        Ok(self.db.contains_key(fb_key(scope, id))?)
    }

    /// Durably marks `id` as started. Returns false, writing nothing, if it was seen.
    pub fn fb_begin(&self, scope: &str, id: &str) -> Result<bool, JournalError> {
        if self.fb_seen(scope, id)? {
            return Ok(false);
        }
        self.fb_put(
            scope,
            &[(
                id.to_string(),
                fb_value(FB_RUNNING, unix_now_ms(), false, ""),
            )],
            &[],
        )?;
        Ok(true)
    }

    /// Durably records the result of a started container, to be reported.
    pub fn fb_finish(
        &self,
        scope: &str,
        id: &str,
        ok: bool,
        text: &str,
    ) -> Result<(), JournalError> {
        self.fb_put(
            scope,
            &[(id.to_string(), fb_value(FB_DONE, unix_now_ms(), ok, text))],
            &[],
        )
    }

    /// Containers that were running when the previous qlship died become results
    /// saying so: they are never run a second time. Call before the first poll.
    pub fn fb_recover(&self, scope: &str) -> Result<Vec<String>, JournalError> {
        let now = unix_now_ms();
        let interrupted: Vec<(String, Vec<u8>)> = self
            .fb_records(scope)?
            .into_iter()
            .filter(|r| r.state == FB_RUNNING)
            .map(|r| (r.id, fb_value(FB_DONE, now, false, FB_INTERRUPTED)))
            .collect();
        if !interrupted.is_empty() {
            self.fb_put(scope, &interrupted, &[])?;
        }
        Ok(interrupted.into_iter().map(|(id, _)| id).collect())
    }

    /// Results not yet accepted by the server, oldest first.
    pub fn fb_unreported(
        &self,
        scope: &str,
    ) -> Result<Vec<crate::feedback::FbResult>, JournalError> {
        let mut done: Vec<FbRecord> = self
            .fb_records(scope)?
            .into_iter()
            .filter(|r| r.state == FB_DONE)
            .collect();
        done.sort_by_key(|r| r.at_ms);
        Ok(done
            .into_iter()
            .map(|r| crate::feedback::FbResult {
                id: r.id,
                ok: r.ok,
                text: r.text,
            })
            .collect())
    }

    /// The server accepted a `checkFb` carrying these results: keep only their ids, and
    /// forget ids reported more than [`FB_REMEMBER_MS`] ago.
    pub fn fb_reported(&self, scope: &str, ids: &[String]) -> Result<(), JournalError> {
        let now = unix_now_ms();
        let records = self.fb_records(scope)?;
        let expired: Vec<String> = records
            .iter()
            .filter(|r| r.state == FB_REPORTED && now.saturating_sub(r.at_ms) > FB_REMEMBER_MS)
            .map(|r| r.id.clone())
            .collect();
        let reported: Vec<(String, Vec<u8>)> = ids
            .iter()
            .map(|id| (id.clone(), fb_value(FB_REPORTED, now, true, "")))
            .collect();
        if reported.is_empty() && expired.is_empty() {
            return Ok(());
        }
        self.fb_put(scope, &reported, &expired)
    }
}
