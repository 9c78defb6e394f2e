//! The feedback task of one target: checkFb polling and running its PBX actions on the
//! local AMI, once each.

use super::*;

/// The daemon's log target, as before the daemon was split into files.
const LOG: &str = "qlship::daemon";

/// Polls `checkFb` every `--feedback` seconds: reports the results not yet accepted and
/// runs the containers handed back, each at most once (see `Journal::fb_begin`). Its own
/// task with its own backoff: a slow server or a stuck Asterisk never delays uploads.
pub(super) async fn feedback(sh: Arc<Shared>, lead: Arc<Lead>) {
    let every = sh.settings.feedback;
    if every.is_zero() || lead.target.noactions {
        return std::future::pending().await;
    }
    let j = sh.journal.clone();
    let scope = lead.fb_scope.clone();
    match blocking(move || j.fb_recover(&scope)).await {
        Ok(ids) => {
            for id in ids {
                lead.status().feedback_interrupted += 1;
                warn!(target: LOG, "{}: feedback action {id} was running when qlship stopped: reported as interrupted, not run again", lead.who());
            }
        }
        Err(e) => {
            error!(target: LOG, "feedback actions off: the journal cannot record them: {e}");
            return std::future::pending().await;
        }
    }
    let mut backoff = backoff(&sh.settings);
    let mut wait = every;
    loop {
        Timer::after(wait).await;
        let polled = poll_feedback(&sh, &lead).await;
        sh.wake_status.notify(); // the results, counters and request counters
        wait = match polled {
            Ok(ran) => {
                backoff.reset();
                // Report what just ran without waiting a whole interval.
                if ran {
                    Duration::ZERO
                } else {
                    every
                }
            }
            Err(e) => {
                let d = backoff.next_delay().max(every);
                warn!(target: LOG,
                    "{}: feedback poll failed: {e}; next in {:.1}s",
                    lead.who(),
                    d.as_secs_f64()
                );
                d
            }
        };
    }
}

/// One `checkFb` round trip and the containers it brought. True when any ran.
async fn poll_feedback(sh: &Arc<Shared>, lead: &Arc<Lead>) -> Result<bool, String> {
    let j = sh.journal.clone();
    let scope = lead.fb_scope.clone();
    let results = blocking(move || j.fb_unreported(&scope))
        .await
        .map_err(|e| e.to_string())?;
    let client = lead.client.clone();
    let sent = results.clone();
    let answer = blocking(move || client.check_fb(&sent))
        .await
        .map_err(|e| e.to_string())?;
    lead.status().last_feedback = Some(now_unix());
    if !results.is_empty() {
        let ids: Vec<String> = results.iter().map(|r| r.id.clone()).collect();
        let j = sh.journal.clone();
        let scope = lead.fb_scope.clone();
        blocking(move || j.fb_reported(&scope, &ids))
            .await
            .map_err(|e| e.to_string())?;
        info!(target: LOG, "feedback: {} result(s) reported", results.len());
    }
    let mut ran = false;
    for container in answer.actions {
        let (id, container) = match container {
            Ok(c) => (c.id.clone(), Ok(c)),
            Err((id, why)) if id.is_empty() => {
                warn!(target: LOG, "feedback: ignored an action container without an id: {why}");
                continue;
            }
            Err((id, why)) => (id, Err(why)),
        };
        let j = sh.journal.clone();
        let key = id.clone();
        let scope = lead.fb_scope.clone();
        if !blocking(move || j.fb_begin(&scope, &key))
            .await
            .map_err(|e| e.to_string())?
        {
            debug!(target: LOG, "feedback action {id} already run; not again");
            continue;
        }
        ran = true;
        let outcome = match container.and_then(|c| crate::feedback::vet(&c, &sh.settings.ami)) {
            Err(why) => {
                warn!(target: LOG, "feedback action {id} refused: {why}");
                lead.status().feedback_refused += 1;
                Err(format!("refused: {why}"))
            }
            Ok(vetted) => {
                let names: Vec<&str> = vetted.transactions.iter().map(|t| t.action()).collect();
                info!(target: LOG,
                    "feedback action {id}: {} on {}:{}",
                    names.join(", "),
                    vetted.host,
                    vetted.port
                );
                for t in &vetted.transactions {
                    debug!(target: LOG, "feedback action {id}: {}", t.redacted());
                }
                let (connect, reply) = (sh.settings.ami_timeout, sh.settings.ami_timeout);
                let outcome = blocking(move || crate::ami::run(&vetted, connect, reply)).await;
                match &outcome {
                    Ok(text) => info!(target: LOG, "feedback action {id} done: {text}"),
                    Err(text) => warn!(target: LOG, "feedback action {id} failed: {text}"),
                }
                lead.status().feedback_ran(outcome.is_ok());
                outcome
            }
        };
        let (ok, text) = match outcome {
            Ok(t) => (true, t),
            Err(t) => (false, t),
        };
        let j = sh.journal.clone();
        let key = id.clone();
        let scope = lead.fb_scope.clone();
        blocking(move || j.fb_finish(&scope, &key, ok, &text))
            .await
            .map_err(|e| e.to_string())?;
        lead.status().feedback_done += 1;
    }
    Ok(ran)
}
