//! A strict stand-in for Asterisk's Manager Interface (TCP, what Asterisk 22 does):
//! a bare banner line, `Key: Value` lines that must end in CRLF, a blank line ending
//! each message, Login required first (a wrong secret is answered and the socket
//! closed), events interleaved before responses, responses carrying the ActionID, and
//! Logoff answered `Goodbye`. It keeps queue membership so that QueueAdd / QueuePause /
//! QueueRemove have visible effects and fail the way Asterisk fails. Faults: never
//! answer a given action (a stalled Asterisk), answer it late, or answer it with an
//! endless line (a hostile or broken peer on the AMI port).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Fields = Vec<(String, String)>;

#[derive(Default)]
struct State {
    /// Every message received after a successful login, in order.
    received: Vec<Fields>,
    /// When each action was answered (action name, when).
    answered: Vec<(String, Instant)>,
    connections: usize,
    violations: Vec<String>,
    /// queue -> [(interface, paused)]
    members: HashMap<String, Vec<(String, bool)>>,
    stall: Option<String>,
    delay: Option<(String, Duration)>,
    flood: Option<String>,
}

struct Inner {
    user: String,
    secret: String,
    state: Mutex<State>,
}

#[derive(Clone)]
pub struct FakeAmi {
    port: u16,
    inner: Arc<Inner>,
}

impl FakeAmi {
    pub fn start(user: &str, secret: &str) -> FakeAmi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            user: user.into(),
            secret: secret.into(),
            state: Mutex::default(),
        });
        let i = inner.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let i = i.clone();
                std::thread::spawn(move || session(&i, conn));
            }
        });
        FakeAmi { port, inner }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Never answer `action` (case-insensitive) from now on; `None` answers again.
    pub fn stall_on(&self, action: Option<&str>) {
        self.inner.state.lock().unwrap().stall = action.map(str::to_string);
    }

    /// Answer `action` with one line that never ends (up to 1 MiB, or until the
    /// client hangs up).
    pub fn flood_on(&self, action: &str) {
        self.inner.state.lock().unwrap().flood = Some(action.into());
    }

    /// Answer `action` only after `d`.
    pub fn delay_on(&self, action: &str, d: Duration) {
        self.inner.state.lock().unwrap().delay = Some((action.into(), d));
    }

    /// Messages received from logged-in clients.
    pub fn received(&self) -> Vec<Fields> {
        self.inner.state.lock().unwrap().received.clone()
    }

    /// How many times `action` was received (after login).
    pub fn count(&self, action: &str) -> usize {
        self.received()
            .iter()
            .filter(|m| get(m, "Action").is_some_and(|a| a.eq_ignore_ascii_case(action)))
            .count()
    }

    pub fn answered(&self, action: &str) -> Option<Instant> {
        let st = self.inner.state.lock().unwrap();
        st.answered
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(action))
            .map(|(_, t)| *t)
    }

    pub fn connections(&self) -> usize {
        self.inner.state.lock().unwrap().connections
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().violations.clone()
    }

    /// Members of `queue` as (interface, paused).
    pub fn members(&self, queue: &str) -> Vec<(String, bool)> {
        let st = self.inner.state.lock().unwrap();
        st.members.get(queue).cloned().unwrap_or_default()
    }
}

pub fn get<'a>(m: &'a Fields, key: &str) -> Option<&'a str> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn reply(out: &mut TcpStream, fields: &[(&str, &str)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (k, v) in fields {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())
}

fn session(inner: &Inner, conn: TcpStream) {
    inner.state.lock().unwrap().connections += 1;
    let violation = |v: String| inner.state.lock().unwrap().violations.push(v);
    let mut out = conn.try_clone().unwrap();
    if out.write_all(b"Asterisk Call Manager/9.0.0\r\n").is_err() {
        return;
    }
    let mut reader = BufReader::new(conn);
    let mut logged_in = false;
    let mut msg: Fields = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with("\r\n") {
            violation(format!("line not ended by CRLF: {line:?}"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() {
            match line.split_once(": ") {
                Some((k, v)) => msg.push((k.to_string(), v.to_string())),
                None => violation(format!("not a 'Key: Value' line: {line:?}")),
            }
            continue;
        }
        if msg.is_empty() {
            continue;
        }
        let m = std::mem::take(&mut msg);
        let action = get(&m, "Action").unwrap_or("").to_string();
        let id = get(&m, "ActionID").unwrap_or("").to_string();
        if action.is_empty() {
            violation(format!("message without Action: {m:?}"));
            let _ = reply(
                &mut out,
                &[
                    ("Response", "Error"),
                    ("Message", "Missing action in request"),
                ],
            );
            continue;
        }
        if !logged_in {
            if !action.eq_ignore_ascii_case("Login") {
                violation(format!("{action} before Login"));
                let _ = reply(
                    &mut out,
                    &[
                        ("Response", "Error"),
                        ("ActionID", &id),
                        ("Message", "Permission denied"),
                    ],
                );
                continue;
            }
            if get(&m, "Username") == Some(inner.user.as_str())
                && get(&m, "Secret") == Some(inner.secret.as_str())
            {
                logged_in = true;
                inner.state.lock().unwrap().received.push(m.clone());
                let _ = reply(
                    &mut out,
                    &[
                        ("Response", "Success"),
                        ("ActionID", &id),
                        ("Message", "Authentication accepted"),
                    ],
                );
                let _ = reply(
                    &mut out,
                    &[
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Status", "Fully Booted"),
                    ],
                );
            } else {
                let _ = reply(
                    &mut out,
                    &[
                        ("Response", "Error"),
                        ("ActionID", &id),
                        ("Message", "Authentication failed"),
                    ],
                );
                return;
            }
            continue;
        }
        let (stalled, delay) = {
            let mut st = inner.state.lock().unwrap();
            st.received.push(m.clone());
            let stalled = st
                .stall
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(&action));
            let delay = st
                .delay
                .as_ref()
                .filter(|(a, _)| a.eq_ignore_ascii_case(&action))
                .map(|(_, d)| *d);
            (stalled, delay)
        };
        let flooded = inner
            .state
            .lock()
            .unwrap()
            .flood
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case(&action));
        if flooded {
            let _ = out.write_all(b"Event: Flood\r\nData: ");
            let chunk = [b'a'; 4096];
            for _ in 0..256 {
                if out.write_all(&chunk).is_err() {
                    return;
                }
            }
            return;
        }
        if stalled {
            // Read and ignore everything else, like an Asterisk stuck on a lock.
            let mut sink = String::new();
            while matches!(reader.read_line(&mut sink), Ok(n) if n > 0) {
                sink.clear();
            }
            return;
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        // An event nobody asked for comes first, as on a busy PBX.
        let _ = reply(
            &mut out,
            &[
                ("Event", "VarSet"),
                ("Privilege", "dialplan,all"),
                ("Variable", "X"),
            ],
        );
        let (ok, message) = perform(inner, &action, &m);
        let status = if ok { "Success" } else { "Error" };
        if action.eq_ignore_ascii_case("Logoff") {
            let _ = reply(
                &mut out,
                &[
                    ("Response", "Goodbye"),
                    ("ActionID", &id),
                    ("Message", "Thanks for all the fish."),
                ],
            );
            return;
        }
        if action.eq_ignore_ascii_case("Ping") {
            let _ = reply(
                &mut out,
                &[("Response", "Success"), ("ActionID", &id), ("Ping", "Pong")],
            );
        } else {
            let _ = reply(
                &mut out,
                &[
                    ("Response", status),
                    ("ActionID", &id),
                    ("Message", &message),
                ],
            );
        }
        inner
            .state
            .lock()
            .unwrap()
            .answered
            .push((action.clone(), Instant::now()));
    }
}

fn perform(inner: &Inner, action: &str, m: &Fields) -> (bool, String) {
    let mut st = inner.state.lock().unwrap();
    let queue = get(m, "Queue").unwrap_or("").to_string();
    let iface = get(m, "Interface").unwrap_or("").to_string();
    match action.to_ascii_lowercase().as_str() {
        "queueadd" => {
            let members = st.members.entry(queue).or_default();
            if members.iter().any(|(i, _)| *i == iface) {
                (false, "Unable to add interface: Already there".into())
            } else {
                let paused = get(m, "Paused").is_some_and(|p| p.eq_ignore_ascii_case("true"));
                members.push((iface, paused));
                (true, "Added interface to queue".into())
            }
        }
        "queueremove" => {
            let members = st.members.entry(queue).or_default();
            let before = members.len();
            members.retain(|(i, _)| *i != iface);
            if members.len() < before {
                (true, "Removed interface from queue".into())
            } else {
                (false, "Unable to remove interface: Not there".into())
            }
        }
        "queuepause" => {
            let paused = get(m, "Paused").is_some_and(|p| p.eq_ignore_ascii_case("true"));
            let mut found = false;
            for (q, members) in st.members.iter_mut() {
                if !queue.is_empty() && *q != queue {
                    continue;
                }
                for (i, p) in members.iter_mut() {
                    if *i == iface {
                        *p = paused;
                        found = true;
                    }
                }
            }
            if found {
                let word = if paused { "paused" } else { "unpaused" };
                (true, format!("Interface {word} successfully"))
            } else {
                (false, "Interface not found".into())
            }
        }
        _ => (true, "OK".into()),
    }
}
