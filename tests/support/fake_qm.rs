//! A strict QueueMetrics stand-in speaking jsonQLoaderApi.do over real HTTP.
//!
//! Strict on purpose, so that a sloppy client fails: preemptive Basic auth only (401
//! without a challenge otherwise), POST of a form-encoded `COMMANDSTRING` only, the
//! documented field names and types, exactly five parameters, ASCII-only JSON (non-ASCII
//! must be `\u` escaped to survive the servlet's ISO-8859-1 form decoding), a 1 MiB body
//! limit, KO answers for bad input. Every violation is also recorded, so tests can
//! assert that none happened. Faults can be injected per command.
#![allow(dead_code)]

use miniserde::json::{self, Number, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredRow {
    pub time_id: String,
    pub call_id: String,
    pub queue: String,
    pub agent: String,
    pub verb: String,
    pub params: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// HTTP 500 before doing anything.
    Http500,
    /// `KO: simulated failure` before doing anything.
    Ko,
    /// `KO: <text>` before doing anything.
    KoWith(&'static str),
    /// Waits, then answers normally.
    Delay(Duration),
    /// Never answers; holds the connection until the client gives up.
    Hang,
    /// Executes the command (stores the rows), then closes without answering.
    DropAfterStore,
    /// Closes without answering and without executing.
    DropBeforeStore,
    /// A proxy that gave up: answers 502 Bad Gateway at once, while the application
    /// server behind it executes the command this much later.
    GatewayThenStore(Duration),
    /// The same proxy closing with no status line at all.
    DropThenStore(Duration),
}

#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub user: String,
    pub pass: String,
    pub context: String,
    pub port: u16,
    /// Print one line per command to stdout (the example binary).
    pub verbose: bool,
    /// Serve HTTPS with this identity instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Benchmarks: keep only a count and the watermark per token, not the rows
    /// (checkRow then always answers 0).
    pub count_only: bool,
    /// Benchmarks: append `<arrival unix ns> <callId>` per stored row to this file.
    pub record: Option<std::path::PathBuf>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            user: "webqloader".into(),
            pass: "qloader".into(),
            context: "queuemetrics".into(),
            port: 0,
            verbose: false,
            tls: None,
            count_only: false,
            record: None,
        }
    }
}

struct FaultRule {
    command: String,
    fault: Fault,
    remaining: u32,
}

#[derive(Default)]
struct State {
    rows: HashMap<String, Vec<StoredRow>>,
    /// count_only mode: rows stored and the highest time, per token.
    counts: HashMap<String, (u64, i64)>,
    faults: Vec<FaultRule>,
    commands: Vec<String>,
    /// Every insertAll received: (rows in it, bytes of the form-encoded body).
    insert_alls: Vec<(usize, usize)>,
    violations: Vec<String>,
    heartbeats: Vec<(String, String)>,
    /// Feedback containers waiting for a result, per token: (id, JSON object text).
    /// Like QueueMetrics, every checkFb hands them out again until a result arrives.
    fb_pending: HashMap<String, Vec<(String, String)>>,
    /// Containers handed out in the next N answers whatever results came (a server
    /// that resends): (token, JSON object text, answers left).
    fb_resend: Vec<(String, String, u32)>,
    fb_results: Vec<FbReport>,
    /// Faults drawn per request: (xorshift state, [(fault, per mille)]).
    random: Option<(u64, Vec<(Fault, u32)>)>,
}

/// A `checkFbResCon` the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FbReport {
    pub token: String,
    pub id: String,
    pub status: String,
    pub result: String,
}

struct Inner {
    cfg: FakeConfig,
    port: u16,
    state: Mutex<State>,
    down: AtomicBool,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
pub struct FakeQm {
    inner: Arc<Inner>,
}

impl FakeQm {
    pub fn start(cfg: FakeConfig) -> FakeQm {
        let listener = TcpListener::bind(("127.0.0.1", cfg.port)).expect("bind fake QueueMetrics");
        let port = listener.local_addr().unwrap().port();
        let qm = FakeQm {
            inner: Arc::new(Inner {
                cfg,
                port,
                state: Mutex::new(State::default()),
                down: AtomicBool::new(false),
                acceptor: Mutex::new(None),
            }),
        };
        qm.spawn_acceptor(listener);
        qm
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    fn spawn_acceptor(&self, listener: TcpListener) {
        let inner = self.inner.clone();
        let handle = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if inner.down.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let inner = inner.clone();
                std::thread::spawn(move || serve(&inner, stream));
            }
        });
        *self.inner.acceptor.lock().unwrap() = Some(handle);
    }

    /// Stops listening: connections are refused until [`FakeQm::resume`].
    pub fn stop(&self) {
        self.inner.down.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.inner.port));
        if let Some(h) = self.inner.acceptor.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    pub fn resume(&self) {
        self.inner.down.store(false, Ordering::SeqCst);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.inner.port)) {
                Ok(l) => break l,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        self.spawn_acceptor(listener);
    }

    /// Injects `fault` for the next `times` requests of `command` (`"*"`: any command).
    pub fn fail(&self, command: &str, fault: Fault, times: u32) {
        self.inner.state.lock().unwrap().faults.push(FaultRule {
            command: command.into(),
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        let mut st = self.inner.state.lock().unwrap();
        st.faults.clear();
        st.random = None;
    }

    /// Every request draws a fault from `mix` ((fault, per mille), the rest succeed),
    /// on top of [`FakeQm::fail`]'s rules, until [`FakeQm::clear_faults`].
    pub fn fail_randomly(&self, seed: u64, mix: &[(Fault, u32)]) {
        self.inner.state.lock().unwrap().random = Some((seed | 1, mix.to_vec()));
    }

    /// How many rows a token holds (works in count_only mode too).
    pub fn count(&self, token: &str) -> u64 {
        let st = self.inner.state.lock().unwrap();
        st.rows.get(token).map_or(0, |r| r.len() as u64) + st.counts.get(token).map_or(0, |c| c.0)
    }

    pub fn rows(&self, token: &str) -> Vec<StoredRow> {
        self.inner
            .state
            .lock()
            .unwrap()
            .rows
            .get(token)
            .cloned()
            .unwrap_or_default()
    }

    /// Rows stored by an earlier loader (for takeover tests).
    pub fn preload(&self, token: &str, rows: Vec<StoredRow>) {
        self.inner
            .state
            .lock()
            .unwrap()
            .rows
            .entry(token.into())
            .or_default()
            .extend(rows);
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().violations.clone()
    }

    pub fn commands(&self, command: &str) -> usize {
        self.inner
            .state
            .lock()
            .unwrap()
            .commands
            .iter()
            .filter(|c| *c == command)
            .count()
    }

    /// Every insertAll received, in order: (rows in it, bytes of its form-encoded body).
    pub fn insert_alls(&self) -> Vec<(usize, usize)> {
        self.inner.state.lock().unwrap().insert_alls.clone()
    }

    /// Queues a feedback action container for `token`: `{id, host, port, actions}`.
    pub fn push_actions(&self, token: &str, id: &str, host: &str, port: u16, actions: &[&str]) {
        let list: Vec<String> = actions.iter().map(|a| json_text(a)).collect();
        let obj = format!(
            "{{\"id\":{},\"host\":{},\"port\":{port},\"actions\":[{}]}}",
            json_text(id),
            json_text(host),
            list.join(",")
        );
        let mut st = self.inner.state.lock().unwrap();
        st.fb_pending
            .entry(token.into())
            .or_default()
            .push((id.into(), obj));
    }

    /// Like `push_actions`, but the container is handed out in each of the next `times`
    /// answers even after its result arrived, as a server that resends would.
    pub fn push_actions_resent(
        &self,
        token: &str,
        id: &str,
        host: &str,
        port: u16,
        actions: &[&str],
        times: u32,
    ) {
        self.push_actions(token, id, host, port, actions);
        let mut st = self.inner.state.lock().unwrap();
        let pending = st.fb_pending.get_mut(token).unwrap();
        let (_, obj) = pending.pop().unwrap();
        st.fb_resend.push((token.into(), obj, times));
    }

    /// How many resends of `push_actions_resent` containers are left.
    pub fn fb_resends_left(&self) -> u32 {
        let st = self.inner.state.lock().unwrap();
        st.fb_resend.iter().map(|r| r.2).sum()
    }

    /// Every feedback result received, in order (a resent one appears twice).
    pub fn fb_results(&self) -> Vec<FbReport> {
        self.inner.state.lock().unwrap().fb_results.clone()
    }

    pub fn heartbeats(&self) -> usize {
        self.inner.state.lock().unwrap().heartbeats.len()
    }

    /// Every heartbeat: (token, timeId).
    pub fn heartbeat_log(&self) -> Vec<(String, String)> {
        self.inner.state.lock().unwrap().heartbeats.clone()
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

enum Reply {
    Http(u16, &'static str, String),
    Json(String),
    /// Close the connection without an answer.
    Drop,
    Hang,
}

fn serve(inner: &Arc<Inner>, mut tcp: TcpStream) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    match inner.cfg.tls.clone() {
        None => {
            if exchange(inner, &mut tcp) == Outcome::Answered {
                // Lingering close: closing with unread bytes would reset the connection
                // and the client would never see the answer.
                let _ = tcp.shutdown(Shutdown::Write);
                drain_until_eof(&mut tcp);
            } else {
                let _ = tcp.shutdown(Shutdown::Both);
            }
        }
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            if exchange(inner, &mut tls) == Outcome::Answered {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                drain_until_eof(&mut tls);
            }
        }
    }
}

#[derive(PartialEq)]
enum Outcome {
    Answered,
    Dropped,
}

/// Reads one request and answers it (or not, as a fault says), on plain TCP or TLS.
fn exchange<S: Read + Write>(inner: &Arc<Inner>, stream: &mut S) -> Outcome {
    let reply = match read_request(stream) {
        Ok(req) => handle(inner, req),
        Err(reply) => reply,
    };
    match reply {
        Reply::Drop => Outcome::Dropped,
        Reply::Hang => {
            // Holds the connection until the client gives up (the read timeout is 30 s;
            // the client's is shorter).
            let _ = stream.read(&mut [0u8; 1]);
            Outcome::Dropped
        }
        Reply::Http(code, reason, body) => {
            send(stream, code, reason, "text/plain", &body);
            Outcome::Answered
        }
        Reply::Json(body) => {
            send(
                stream,
                200,
                "OK",
                "application/json;charset=ISO-8859-1",
                &body,
            );
            Outcome::Answered
        }
    }
}

fn drain_until_eof<S: Read>(stream: &mut S) {
    let mut sink = [0u8; 8192];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn send<S: Write>(stream: &mut S, code: u16, reason: &str, ctype: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nSet-Cookie: JSESSIONID=fake; Path=/\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn read_request<S: Read>(stream: &mut S) -> Result<Request, Reply> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|_| Reply::Drop)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(Reply::Drop);
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = HashMap::new();
    let mut header_bytes = 0;
    loop {
        let mut h = String::new();
        let n = reader.read_line(&mut h).map_err(|_| Reply::Drop)?;
        header_bytes += n;
        if n == 0 || header_bytes > 16 * 1024 {
            return Err(Reply::Http(400, "Bad Request", "headers".into()));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    if headers.contains_key("transfer-encoding") {
        return Err(Reply::Http(
            411,
            "Length Required",
            "chunked bodies are not accepted".into(),
        ));
    }
    let len: usize = match headers.get("content-length").map(|v| v.parse()) {
        Some(Ok(n)) => n,
        _ if method != "POST" => 0,
        _ => {
            return Err(Reply::Http(
                411,
                "Length Required",
                "Content-Length required".into(),
            ))
        }
    };
    if len > MAX_BODY {
        return Err(Reply::Http(
            413,
            "Payload Too Large",
            format!("body of {len} bytes exceeds {MAX_BODY}"),
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(|_| Reply::Drop)?;
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn handle(inner: &Arc<Inner>, req: Request) -> Reply {
    let cfg = &inner.cfg;
    let violation = |msg: String| inner.state.lock().unwrap().violations.push(msg);
    if req.method != "POST" {
        violation(format!("method {}", req.method));
        return Reply::Http(405, "Method Not Allowed", "POST only".into());
    }
    let expected_path = format!("/{}/jsonQLoaderApi.do", cfg.context);
    if req.path != expected_path {
        violation(format!("path {}", req.path));
        return Reply::Http(404, "Not Found", req.path);
    }
    let expected_auth = format!("Basic {}", base64(&format!("{}:{}", cfg.user, cfg.pass)));
    if req.headers.get("authorization") != Some(&expected_auth) {
        violation("missing or wrong Basic auth".into());
        // QueueMetrics does not challenge: no WWW-Authenticate header.
        return Reply::Http(401, "Unauthorized", "authentication required".into());
    }
    let ctype = req.headers.get("content-type").cloned().unwrap_or_default();
    if !ctype
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        violation(format!("content type {ctype:?}"));
        return Reply::Http(400, "Bad Request", "form encoding required".into());
    }
    let command = match decode_form(&req.body) {
        Ok(c) => c,
        Err(e) => {
            violation(format!("form: {e}"));
            return Reply::Http(400, "Bad Request", e);
        }
    };
    if let Some(i) = command.iter().position(|b| !b.is_ascii()) {
        violation(format!(
            "non-ASCII byte 0x{:02x} in COMMANDSTRING at {i}",
            command[i]
        ));
        return ko("", "non-ASCII data in COMMANDSTRING (would be mojibake)");
    }
    let text = String::from_utf8(command).expect("ascii");
    let Ok(Value::Object(obj)) = json::from_str::<Value>(&text) else {
        violation(format!(
            "not a JSON object: {}",
            &text[..text.len().min(80)]
        ));
        return ko("", "invalid JSON");
    };
    let command_id = match obj.get("commandId") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            violation("no commandId".into());
            return ko("", "no commandId");
        }
    };
    if let Err(e) = validate(&command_id, &obj) {
        violation(format!("{command_id}: {e}"));
        return ko(&command_id, &e);
    }
    let token = string(&obj, "token");
    let fault = {
        let mut st = inner.state.lock().unwrap();
        st.commands.push(command_id.clone());
        if let Some(Value::Array(rows)) = obj.get("rows") {
            st.insert_alls.push((rows.len(), req.body.len()));
        }
        let rule = st
            .faults
            .iter_mut()
            .find(|r| r.remaining > 0 && (r.command == "*" || r.command == command_id));
        let ruled = rule.map(|r| {
            r.remaining -= 1;
            r.fault
        });
        ruled.or_else(|| draw(&mut st.random))
    };
    match fault {
        Some(Fault::Http500) => {
            return Reply::Http(500, "Internal Server Error", "simulated".into())
        }
        Some(Fault::Ko) => return ko(&command_id, "simulated failure"),
        Some(Fault::KoWith(text)) => return ko(&command_id, text),
        Some(Fault::Hang) => return Reply::Hang,
        Some(Fault::DropBeforeStore) => return Reply::Drop,
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        Some(Fault::GatewayThenStore(after)) | Some(Fault::DropThenStore(after)) => {
            let (inner, token) = (inner.clone(), token.clone());
            std::thread::spawn(move || {
                std::thread::sleep(after);
                execute(&inner, &command_id, &token, &obj);
            });
            return match fault {
                Some(Fault::GatewayThenStore(_)) => {
                    Reply::Http(502, "Bad Gateway", "upstream timed out".into())
                }
                _ => Reply::Drop,
            };
        }
        Some(Fault::DropAfterStore) | None => {}
    }
    let result = execute(inner, &command_id, &token, &obj);
    if cfg.verbose {
        println!("{command_id} token={token:?}: {}", result.1);
    }
    if fault == Some(Fault::DropAfterStore) {
        return Reply::Drop;
    }
    Reply::Json(result.0)
}

/// A fault for this request from the random mix, if one is drawn.
fn draw(random: &mut Option<(u64, Vec<(Fault, u32)>)>) -> Option<Fault> {
    let (state, mix) = random.as_mut()?;
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let mut x = (*state % 1000) as u32;
    for &(fault, per_mille) in mix.iter() {
        if x < per_mille {
            return Some(fault);
        }
        x -= per_mille;
    }
    None
}

fn execute(inner: &Inner, command: &str, token: &str, obj: &json::Object) -> (String, String) {
    let mut st = inner.state.lock().unwrap();
    let ok = |result: Option<String>, extra: &str| {
        let mut out = format!(
            "{{\"commandId\":\"{command}\",\"version\":\"1.0\",\"resultStatus\":\"OK\",\"result\":"
        );
        match result {
            Some(r) => out.push_str(&format!("\"{r}\"")),
            None => out.push_str("null"),
        }
        out.push_str(extra);
        out.push_str(",\"name\":\"fake QueueMetrics\"}");
        out
    };
    match command {
        "checkHWM" => {
            let hwm = st
                .rows
                .get(token)
                .and_then(|rows| rows.iter().map(|r| r.time_id.parse::<i64>().unwrap()).max())
                .or_else(|| st.counts.get(token).map(|c| c.1));
            (
                ok(hwm.map(|h| h.to_string()), ""),
                format!("watermark {hwm:?}"),
            )
        }
        "checkRow" => {
            let row = stored_row(obj);
            let n = st
                .rows
                .get(token)
                .map_or(0, |rows| rows.iter().filter(|r| **r == row).count());
            (ok(Some(n.to_string()), ""), format!("{n} copies"))
        }
        "insertRow" => {
            let rows = st.rows.entry(token.into()).or_default();
            rows.push(stored_row(obj));
            let id = rows.len();
            (ok(Some(id.to_string()), ""), "1 row stored".into())
        }
        "insertAll" => {
            let Some(Value::Array(list)) = obj.get("rows") else {
                unreachable!()
            };
            let new: Vec<StoredRow> = list
                .iter()
                .map(|v| match v {
                    Value::Object(o) => stored_row(o),
                    _ => unreachable!(),
                })
                .collect();
            let n = new.len();
            if let Some(path) = &inner.cfg.record {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let lines: String = new
                    .iter()
                    .map(|r| format!("{now} {}\n", r.call_id))
                    .collect();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                let _ = f.write_all(lines.as_bytes());
            }
            let total = if inner.cfg.count_only {
                let max = new
                    .iter()
                    .map(|r| r.time_id.parse::<i64>().unwrap())
                    .max()
                    .unwrap_or(0);
                let c = st.counts.entry(token.into()).or_insert((0, 0));
                c.0 += n as u64;
                c.1 = c.1.max(max);
                c.0 as usize
            } else {
                let rows = st.rows.entry(token.into()).or_default();
                rows.extend(new);
                rows.len()
            };
            (
                ok(Some(n.to_string()), ""),
                format!("{n} rows stored (total {total})"),
            )
        }
        "checkHb" => {
            st.heartbeats.push((token.into(), string(obj, "timeId")));
            (ok(Some("OK".into()), ""), "heartbeat".into())
        }
        "checkFb" => {
            let Some(Value::Array(results)) = obj.get("results") else {
                unreachable!("validated")
            };
            for r in results {
                let Value::Object(o) = r else {
                    unreachable!("validated")
                };
                let report = FbReport {
                    token: token.into(),
                    id: string(o, "id"),
                    status: string(o, "resultStatus"),
                    result: string(o, "result"),
                };
                if let Some(pending) = st.fb_pending.get_mut(token) {
                    pending.retain(|(id, _)| *id != report.id);
                }
                st.fb_results.push(report);
            }
            let mut pending: Vec<String> = st
                .fb_pending
                .get(token)
                .map(|p| p.iter().map(|(_, o)| o.clone()).collect())
                .unwrap_or_default();
            for (t, obj, left) in st.fb_resend.iter_mut() {
                if t == token && *left > 0 {
                    *left -= 1;
                    pending.push(obj.clone());
                }
            }
            (
                ok(None, &format!(",\"actions\":[{}]", pending.join(","))),
                format!(
                    "{} results, {} actions handed out",
                    results.len(),
                    pending.len()
                ),
            )
        }
        _ => unreachable!("validated"),
    }
}

fn ko(command: &str, text: &str) -> Reply {
    Reply::Json(format!(
        "{{\"commandId\":\"{command}\",\"version\":\"1.0\",\"resultStatus\":\"KO: {text}\",\"result\":null,\"name\":\"fake QueueMetrics\"}}"
    ))
}

const ROW_KEYS: &[&str] = &["timeId", "callId", "queue", "agent", "verb", "parameters"];

fn validate(command: &str, obj: &json::Object) -> Result<(), String> {
    let base = ["commandId", "version", "token"];
    let extra: &[&str] = match command {
        "checkHWM" => &[],
        "checkRow" | "insertRow" => ROW_KEYS,
        "insertAll" => &["rows"],
        "checkHb" => &["timeId"],
        "checkFb" => &["results"],
        other => return Err(format!("unknown commandId {other:?}")),
    };
    exact_keys(obj, &[&base[..], extra].concat())?;
    match obj.get("version") {
        Some(Value::String(v)) if v == "1.0" => {}
        _ => return Err("version must be the string \"1.0\"".into()),
    }
    if !matches!(obj.get("token"), Some(Value::String(_))) {
        return Err("token must be a string".into());
    }
    match command {
        "checkRow" | "insertRow" => validate_row(obj),
        "insertAll" => match obj.get("rows") {
            Some(Value::Array(rows)) if !rows.is_empty() => {
                for (i, r) in rows.iter().enumerate() {
                    match r {
                        Value::Object(o) => {
                            exact_keys(o, ROW_KEYS).map_err(|e| format!("rows[{i}]: {e}"))?;
                            validate_row(o).map_err(|e| format!("rows[{i}]: {e}"))?;
                        }
                        _ => return Err(format!("rows[{i}] is not an object")),
                    }
                }
                Ok(())
            }
            _ => Err("rows must be a non-empty array".into()),
        },
        "checkHb" => digits(obj, "timeId"),
        "checkFb" => match obj.get("results") {
            Some(Value::Array(results)) => {
                for (i, r) in results.iter().enumerate() {
                    let Value::Object(o) = r else {
                        return Err(format!("results[{i}] is not an object"));
                    };
                    validate_fb_result(o, obj).map_err(|e| format!("results[{i}]: {e}"))?;
                }
                Ok(())
            }
            _ => Err("results must be an array".into()),
        },
        _ => Ok(()),
    }
}

/// `{commandId: checkFbResCon, version, token, id, resultStatus: OK|KO, result}`, with
/// the request's own token.
fn validate_fb_result(o: &json::Object, request: &json::Object) -> Result<(), String> {
    exact_keys(
        o,
        &[
            "commandId",
            "version",
            "token",
            "id",
            "resultStatus",
            "result",
        ],
    )?;
    let text = |k: &str| match o.get(k) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(format!("{k} must be a string")),
    };
    if text("commandId")? != "checkFbResCon" {
        return Err("commandId must be \"checkFbResCon\"".into());
    }
    if text("version")? != "1.0" {
        return Err("version must be \"1.0\"".into());
    }
    if Some(text("token")?)
        != request.get("token").and_then(|t| match t {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    {
        return Err("token differs from the request's".into());
    }
    if text("id")?.is_empty() {
        return Err("id is empty".into());
    }
    if !matches!(text("resultStatus")?, "OK" | "KO") {
        return Err("resultStatus must be OK or KO".into());
    }
    text("result")?;
    Ok(())
}

/// A JSON string literal.
fn json_text(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn exact_keys(obj: &json::Object, keys: &[&str]) -> Result<(), String> {
    for k in obj.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(format!("unexpected field {k:?}"));
        }
    }
    for k in keys {
        if !obj.contains_key(*k) {
            return Err(format!("missing field {k:?}"));
        }
    }
    Ok(())
}

fn digits(obj: &json::Object, key: &str) -> Result<(), String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("{key} must be a string of digits")),
    }
}

fn validate_row(obj: &json::Object) -> Result<(), String> {
    digits(obj, "timeId")?;
    for k in ["callId", "queue", "agent", "verb"] {
        if !matches!(obj.get(k), Some(Value::String(_))) {
            return Err(format!("{k} must be a string"));
        }
    }
    match obj.get("parameters") {
        Some(Value::Array(p))
            if p.len() == 5 && p.iter().all(|v| matches!(v, Value::String(_))) =>
        {
            Ok(())
        }
        Some(Value::Array(p)) => Err(format!(
            "parameters must be exactly 5 strings, got {} items",
            p.len()
        )),
        _ => Err("parameters must be an array of 5 strings".into()),
    }
}

fn string(obj: &json::Object, key: &str) -> String {
    match obj.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(Number::U64(n))) => n.to_string(),
        _ => String::new(),
    }
}

fn stored_row(obj: &json::Object) -> StoredRow {
    let params = match obj.get("parameters") {
        Some(Value::Array(p)) => p
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    StoredRow {
        time_id: string(obj, "timeId"),
        call_id: string(obj, "callId"),
        queue: string(obj, "queue"),
        agent: string(obj, "agent"),
        verb: string(obj, "verb"),
        params,
    }
}

/// Decodes `COMMANDSTRING=…`: exactly that one field, strict percent-decoding.
pub fn decode_form(body: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "form body is not ASCII".to_string())?;
    let mut value = None;
    for pair in text.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("field without '=': {pair:?}"))?;
        if k != "COMMANDSTRING" {
            return Err(format!("unexpected form field {k:?}"));
        }
        if value.is_some() {
            return Err("COMMANDSTRING given twice".into());
        }
        value = Some(v);
    }
    let v = value.ok_or("no COMMANDSTRING field")?;
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape at {i}"))?;
                out.push(byte);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || b"-_.~*".contains(&c) => {
                out.push(c);
                i += 1;
            }
            c => {
                return Err(format!(
                    "unencoded character {:?} in form value",
                    char::from(c)
                ))
            }
        }
    }
    Ok(out)
}

fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                char::from(A[((n >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}
