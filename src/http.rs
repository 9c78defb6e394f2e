//! The HTTP shell: one blocking POST per command (called on a `workers` thread).

use crate::config::Settings;
use crate::health::meter::{Command, Meter};
use crate::machine::upload::{Failure, Fate};
use crate::protocol::{self, Answer, AnswerError, Partition};
use crate::row::Row;
use crate::rules::Target;
use std::fmt;
use std::io;

/// Answers are a few hundred bytes; anything beyond this is not QueueMetrics talking.
const MAX_ANSWER: usize = 64 * 1024;
const MAX_STATUS_LINE: usize = 1024;
const MAX_HEADERS: usize = 16 * 1024;

#[derive(Debug)]
pub enum HttpError {
    /// The connection was refused or could not be made: nothing reached the server.
    Connect(String),
    /// Failed after the request may have been sent: its fate is unknown.
    Transport(String),
    /// The TLS handshake failed (certificate not trusted, …): nothing was sent.
    Tls(String),
    Status(i32, String),
    BadAnswer(AnswerError),
    /// `KO: …` with the server's text.
    Ko(String),
    /// OK, but not the answer the command implies (e.g. a short insertAll count).
    Unexpected(String),
}

impl HttpError {
    /// What became of the request, decided by the error's kind (never its text).
    /// A gateway's 502/503/504, and minreq's stand-in for a missing status line (a
    /// 503), say only that no answer came from QueueMetrics: the application server
    /// behind a proxy may store the request seconds later.
    pub fn fate(&self) -> Fate {
        match self {
            HttpError::Connect(_) | HttpError::Tls(_) => Fate::NotSent,
            HttpError::Transport(_) | HttpError::Status(502..=504, _) => Fate::Unknown,
            HttpError::Status(..)
            | HttpError::BadAnswer(_)
            | HttpError::Ko(_)
            | HttpError::Unexpected(_) => Fate::Refused,
        }
    }

    /// The same, for the uploader's state machine.
    pub fn failure(&self) -> Failure {
        Failure {
            fate: self.fate(),
            text: self.to_string(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Transport(e) => write!(f, "connection failed mid-request: {e}"),
            HttpError::Tls(e) => write!(f, "TLS failure: {e}"),
            HttpError::Status(401, _) => write!(
                f,
                "HTTP 401: user or password wrong, or the user lacks the WQLOADER key"
            ),
            HttpError::Status(404, _) => write!(
                f,
                "HTTP 404: wrong context (-c) or not a QueueMetrics server"
            ),
            HttpError::Status(code, text) => write!(f, "HTTP {code}: {text}"),
            HttpError::BadAnswer(e) => write!(f, "{e}"),
            HttpError::Ko(text) => write!(f, "KO: {text}"),
            HttpError::Unexpected(text) => write!(f, "{text}"),
        }
    }
}

#[derive(Clone)]
pub struct Client {
    url: String,
    /// For telling a name-lookup failure from other connection errors.
    host: String,
    port: u16,
    auth: String,
    timeout_secs: u64,
    pub partition: Partition,
    /// Requests and answers, for the metrics and the stall detector (shared by clones).
    meter: std::sync::Arc<Meter>,
}

impl Client {
    pub fn new(t: &Target, s: &Settings) -> Client {
        Client {
            url: t.url(),
            host: t.host.clone(),
            port: t.port,
            auth: protocol::basic_auth(&t.user, t.password.expose()),
            timeout_secs: s.http_timeout.as_secs_f64().ceil().max(1.0) as u64,
            partition: Partition {
                token: t.token.clone(),
                tz_offset: t.tz_offset,
            },
            meter: Default::default(),
        }
    }

    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Counts the request's outcome, as the method that made it judged it.
    fn metered<T>(&self, command: Command, result: Result<T, HttpError>) -> Result<T, HttpError> {
        self.meter.record(command, &result);
        result
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs a form body and decodes the answer; a KO answer is an error.
    pub fn post(&self, body: String) -> Result<Answer, HttpError> {
        let response = minreq::post(&self.url)
            .with_header("Authorization", &self.auth)
            .with_header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .with_header("Connection", "close")
            .with_body(body)
            .with_timeout(self.timeout_secs)
            .with_max_redirects(0)
            // minreq 2 reads headers without bound unless told: a hostile or broken
            // server (or anyone on a plain-HTTP path) could fill the box's memory.
            .with_max_status_line_length(MAX_STATUS_LINE)
            .with_max_headers_size(MAX_HEADERS)
            .send_lazy()
            .map_err(|e| self.classify(e))?;
        let status = response.status_code;
        let reason = response.reason_phrase.clone();
        let mut bytes = Vec::with_capacity(512);
        for b in response {
            let (b, _) = b.map_err(|e| HttpError::Transport(e.to_string()))?;
            if bytes.len() >= MAX_ANSWER {
                return Err(HttpError::Unexpected(format!(
                    "answer larger than {MAX_ANSWER} bytes"
                )));
            }
            bytes.push(b);
        }
        if !(200..300).contains(&status) {
            return Err(HttpError::Status(status, reason));
        }
        let answer = protocol::parse_answer(&bytes).map_err(HttpError::BadAnswer)?;
        match answer.status {
            Ok(()) => Ok(answer),
            Err(text) => Err(HttpError::Ko(text)),
        }
    }

    /// The partition's high-water mark: the latest time stored, None when empty.
    pub fn check_hwm(&self) -> Result<Option<i64>, HttpError> {
        let result = self
            .post(protocol::form_body(&protocol::check_hwm(&self.partition)))
            .and_then(|answer| match answer.result.as_deref().map(str::trim) {
                None | Some("") | Some("null") => Ok(None),
                Some(t) => t
                    .parse::<i64>()
                    .ok()
                    .and_then(|w| w.checked_sub(self.partition.tz_offset))
                    .map(Some)
                    .ok_or_else(|| {
                        HttpError::Unexpected(format!("checkHWM result {t:?} is not a time"))
                    }),
            });
        self.metered(Command::CheckHwm, result)
    }

    /// How many rows identical to `row` the server stores.
    pub fn check_row(&self, row: &Row) -> Result<u64, HttpError> {
        let result = self
            .post(protocol::form_body(&protocol::check_row(
                row,
                &self.partition,
            )))
            .and_then(|answer| {
                let text = answer.result.unwrap_or_default();
                text.trim().parse().map_err(|_| {
                    HttpError::Unexpected(format!("checkRow result {text:?} is not a count"))
                })
            });
        self.metered(Command::CheckRow, result)
    }

    pub fn insert_all(&self, body: String, rows: usize) -> Result<(), HttpError> {
        let result = self.post(body).and_then(|answer| {
            let text = answer.result.unwrap_or_default();
            match text.trim().parse::<usize>() {
                Ok(n) if n == rows => Ok(()),
                _ => Err(HttpError::Unexpected(format!(
                    "insertAll stored {text:?} of {rows} rows"
                ))),
            }
        });
        self.metered(Command::InsertAll, result)
    }

    /// Reports `results` and fetches the pending feedback actions.
    pub fn check_fb(&self, results: &[crate::feedback::FbResult]) -> Result<Answer, HttpError> {
        let result = self.post(protocol::form_body(&crate::feedback::check_fb(
            &self.partition,
            results,
        )));
        self.metered(Command::CheckFb, result)
    }

    pub fn check_hb(&self, now: i64) -> Result<(), HttpError> {
        let result = self.post(protocol::form_body(&protocol::check_hb(
            &self.partition,
            now,
        )));
        self.metered(Command::CheckHb, result.map(|_| ()))
    }
}

impl Client {
    /// Sorts minreq's error by kind: whether the request can have reached the server.
    fn classify(&self, e: minreq::Error) -> HttpError {
        match e {
            minreq::Error::AddressNotFound => HttpError::Connect(self.lookup_failed()),
            #[cfg(feature = "https")]
            minreq::Error::RustlsCreateConnection(e) => HttpError::Tls(e.to_string()),
            minreq::Error::IoError(io) => {
                if let Some(tls) = handshake_failure(&io) {
                    return HttpError::Tls(tls);
                }
                if is_connect_failure(&io) {
                    return HttpError::Connect(io.to_string());
                }
                // Errors of the OS carry its error number; a failed name lookup is
                // std's own error without one. Looking the name up again tells.
                if io.raw_os_error().is_none() && self.name_does_not_resolve() {
                    return HttpError::Connect(self.lookup_failed());
                }
                HttpError::Transport(io.to_string())
            }
            other => HttpError::Transport(other.to_string()),
        }
    }

    fn name_does_not_resolve(&self) -> bool {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_or(true, |mut a| a.next().is_none())
    }

    fn lookup_failed(&self) -> String {
        format!(
            "cannot resolve host name {:?}: check -h/QMHOST and the box's DNS (/etc/resolv.conf)",
            self.host
        )
    }
}

/// A TLS error that can only happen during the handshake, before any byte of the
/// request was written: the server cannot have acted on it.
#[cfg(feature = "https")]
fn handshake_failure(e: &io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let handshake = matches!(
        tls,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::HandshakeNotComplete
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::UnsupportedNameType
    );
    handshake.then(|| tls.to_string())
}

#[cfg(not(feature = "https"))]
fn handshake_failure(_: &io::Error) -> Option<String> {
    None
}
fn is_connect_failure(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
