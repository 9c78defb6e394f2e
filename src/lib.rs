//! qlship: ships Asterisk's queue_log to QueueMetrics, exactly once.
//!
//! Pure core (no I/O): [`machine`] (the uploader's state machine), [`lines`], [`parse`],
//! [`row`], [`protocol`], [`resync`], [`backoff`], [`config`]. Thin shells: [`tail`] (files), [`journal`] (sled),
//! [`http`] (minreq), [`daemon`] (smol tasks), [`app`] (process).

pub mod allocator;
pub mod ami;
pub mod ami_policy;
pub mod ami_wire;
pub mod app;
pub mod atomic64;
pub mod atomic_file;
pub mod backoff;
pub mod config;
pub mod daemon;
pub mod fanout;
pub mod feedback;
pub mod gunzip;
pub mod health;
pub mod http;
pub mod journal;
pub mod lines;
pub mod logging;
pub mod machine;
pub mod parse;
pub mod protocol;
pub mod queue_log_path;
pub mod resync;
pub mod row;
pub mod rules;
pub mod secret;
pub mod status;
pub mod tail;
pub mod tls;
pub mod warnings;
pub mod workers;
