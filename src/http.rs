//! The HTTP shell: one blocking POST per command (called on a `workers` thread).

use crate::config::Settings;
use crate::health::meter::{Command, Meter};
use crate::protocol::{self, Answer, AnswerError, Partition};
use crate::row::Row;
use crate::rules::Target;
use std::fmt;
use std::io;

/// Answers are a few hundred bytes; anything beyond this is not QueueMetrics talking.
const MAX_ANSWER: usize = 64 * 1024;

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
    /// True when the server certainly did not act on the request.
    pub fn never_sent(&self) -> bool {
        matches!(self, HttpError::Connect(_) | HttpError::Tls(_))
    }

    /// True when the server may still be working on the request (no answer came back).
    pub fn unanswered(&self) -> bool {
        matches!(self, HttpError::Transport(_))
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
            .send_lazy()
            .map_err(classify)?;
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

fn classify(e: minreq::Error) -> HttpError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("handshake") || lower.contains("tls") {
        return HttpError::Tls(text);
    }
    match e {
        minreq::Error::IoError(io) if is_connect_failure(&io) => HttpError::Connect(io.to_string()),
        minreq::Error::AddressNotFound => HttpError::Connect("host name not found".into()),
        other => HttpError::Transport(other.to_string()),
    }
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
