//! The Asterisk Manager Interface side of feedback actions: one TCP connection per
//! container, each transaction sent and its response awaited with a deadline, then
//! `Logoff`. Blocking; the daemon runs it on a worker thread.

use crate::feedback::{judge, Message, MessageReader, Transaction, Vetted};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Runs a vetted container. `Ok(text)` when every transaction succeeded, `Err(text)`
/// with Asterisk's message (or what went wrong on the way) otherwise. Stops at the
/// first failed transaction: the next ones usually depend on it.
pub fn run(
    v: &Vetted,
    connect_timeout: Duration,
    reply_timeout: Duration,
) -> Result<String, String> {
    let addr = (v.host.as_str(), v.port)
        .to_socket_addrs()
        .map_err(|e| format!("AMI {}:{}: {e}", v.host, v.port))?
        .next()
        .ok_or_else(|| format!("AMI {}:{}: no address", v.host, v.port))?;
    let started = Instant::now();
    let container_limit = reply_timeout.saturating_mul(CONTAINER_LIMIT_IN_TIMEOUTS);
    let mut conn = Conn {
        stream: TcpStream::connect_timeout(&addr, connect_timeout)
            .map_err(|e| format!("AMI {addr}: cannot connect: {e}"))?,
        reader: MessageReader::default(),
        queued: Vec::new(),
        reply_timeout,
        container_limit,
        container_deadline: started + container_limit,
    };
    conn.banner()?;
    let mut done = Vec::new();
    let mut outcome = Ok(());
    for t in &v.transactions {
        match conn.transact(t) {
            Ok(text) => done.push(text),
            Err(text) => {
                outcome = Err(text);
                break;
            }
        }
    }
    // Polite, and bounded: a stuck Asterisk must not hold the result back.
    let _ = conn.logoff();
    let summary = done.join("; ");
    match outcome {
        Ok(()) => Ok(summary),
        Err(e) if summary.is_empty() => Err(e),
        Err(e) => Err(format!("{e} (after {summary})")),
    }
}

struct Conn {
    stream: TcpStream,
    reader: MessageReader,
    queued: Vec<Message>,
    reply_timeout: Duration,
    /// The whole container's limit: a PBX that answers each action just in time, or
    /// drips events, cannot hold the feedback task for longer.
    container_limit: Duration,
    container_deadline: Instant,
}

/// A container may take this many answer deadlines in all (connect, banner and
/// actions); its actions are capped in number (feedback::MAX_ACTIONS_PER_CONTAINER).
pub const CONTAINER_LIMIT_IN_TIMEOUTS: u32 = 3;

impl Conn {
    fn next_message(&mut self, deadline: Instant) -> Result<Message, String> {
        loop {
            if !self.queued.is_empty() {
                return Ok(self.queued.remove(0));
            }
            if Instant::now() >= self.container_deadline {
                return Err(format!(
                    "the container took longer than {}s in all",
                    self.container_limit.as_secs_f64()
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "AMI did not answer within {}s",
                    self.reply_timeout.as_secs_f64()
                ));
            }
            let left = left.min(
                self.container_deadline
                    .saturating_duration_since(Instant::now()),
            );
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| format!("AMI: {e}"))?;
            let mut buf = [0u8; 2048];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("AMI closed the connection".into()),
                Ok(n) => self.queued = self.reader.feed(&buf[..n]).map_err(|e| e.to_string())?,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("AMI: {e}")),
            }
        }
    }

    fn banner(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.reply_timeout;
        let m = self.next_message(deadline)?;
        match m.get("Banner") {
            Some(b) if b.starts_with("Asterisk Call Manager") => Ok(()),
            _ => Err(format!("not an Asterisk Manager Interface: {:?}", m.fields)),
        }
    }

    /// Sends `t` and waits for the response with its ActionID, skipping events and
    /// responses to other actions.
    fn transact(&mut self, t: &Transaction) -> Result<String, String> {
        let id = t.get("ActionID").unwrap_or_default().to_string();
        self.stream
            .write_all(t.encode().as_bytes())
            .map_err(|e| format!("{}: AMI write failed: {e}", t.action()))?;
        let deadline = Instant::now() + self.reply_timeout;
        loop {
            let m = self
                .next_message(deadline)
                .map_err(|e| format!("{}: {e}", t.action()))?;
            if m.get("Response").is_some() && m.get("ActionID") == Some(id.as_str()) {
                return judge(t, &m);
            }
        }
    }

    fn logoff(&mut self) -> Result<(), String> {
        let t = Transaction {
            fields: vec![
                ("Action".into(), "Logoff".into()),
                ("ActionID".into(), "qlship-logoff".into()),
            ],
        };
        self.reply_timeout = self.reply_timeout.min(Duration::from_secs(2));
        // Polite even when the container ran out of time, but never long.
        self.container_deadline = self
            .container_deadline
            .max(Instant::now() + self.reply_timeout);
        self.transact(&t).map(|_| ())
    }
}
