//! What an operator sees of a running process: [`metrics`] (Prometheus counters, gauges and
//! histograms), the transfer log in xferlog format ([`xferlog`]), the HTTP endpoint that serves
//! `/metrics`, `/health` and `/ready` ([`http`]), the identity every log line of a session
//! carries ([`SessionTag`]), the batching writer every log goes through ([`line_writer`]) and the
//! text format of log lines off a terminal ([`text_format`]).
//!
//! One [`Telemetry`] is shared by every server of a process; it only observes, and nothing in
//! it can refuse or slow a client (its queues drop and count instead of blocking).

pub mod http;
pub mod libunftp_log;
pub mod line_writer;
pub mod metrics;
pub mod text_format;
pub mod xferlog;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::Metrics;
use xferlog::TransferLog;

/// The metrics and the transfer log of one process.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Every server's counters.
    pub metrics: Metrics,
    /// Where transfers are logged, if anywhere (`--transfer-log`).
    pub transfer_log: Option<TransferLog>,
}

impl Telemetry {
    /// Fresh metrics and, if given, the transfer log.
    pub fn new(transfer_log: Option<TransferLog>) -> Self {
        Telemetry { metrics: Metrics::new(), transfer_log }
    }
}

/// One session's identity in the logs: a number unique in this process, and the span
/// (`session{id=… peer=… user=…}`) that every line about the session is written in.
#[derive(Clone, Debug)]
pub struct SessionTag {
    /// The session's number.
    pub id: u64,
    /// The server's name.
    pub server: Arc<str>,
    /// The span; `user` is filled in at login.
    pub span: tracing::Span,
}

impl SessionTag {
    /// A new session from `peer` on `server`.
    pub fn new(server: &str, peer: SocketAddr) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("session", id, server, %peer, user = tracing::field::Empty);
        SessionTag { id, server: server.into(), span }
    }

    /// A tag for code that runs outside any session (tests, the SITE table's template).
    pub fn none() -> Self {
        SessionTag { id: 0, server: "".into(), span: tracing::Span::none() }
    }

    /// Records the user who logged in.
    pub fn logged_in(&self, user: &str) {
        self.span.record("user", user);
    }
}
