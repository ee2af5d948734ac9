//! The only code that opens FTP connections from the main server to workers.
//!
//! A [`WorkerClient`] keeps, per worker address, a pool of idle logged-in control connections.
//! Each request takes one connection out of the pool (or opens a new one), sends one SITE line,
//! reads one reply and gives the connection back; so concurrent requests never queue behind one
//! connection, and a connection is reused as soon as its request is answered. Every call is
//! bounded by the client's timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suppaftp::tokio::AsyncFtpStream;
use suppaftp::{FtpError, Status};

/// Most idle connections kept per worker; connections returned beyond that are closed.
pub const MAX_IDLE_PER_WORKER: usize = 64;

/// Why a call to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker could not be reached or logged in to.
    #[error("cannot connect to worker at {address}: {source}")]
    Connect {
        /// The worker's address.
        address: SocketAddr,
        /// What failed.
        source: FtpError,
    },
    /// The connection failed while the request was under way.
    #[error("worker at {address} failed during the request: {source}")]
    Exchange {
        /// The worker's address.
        address: SocketAddr,
        /// What failed.
        source: FtpError,
    },
    /// The worker did not answer within the timeout.
    #[error("worker at {address} did not answer within {timeout:?}")]
    Timeout {
        /// The worker's address.
        address: SocketAddr,
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// A reply a worker sent to a SITE request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerReply {
    /// The reply code, e.g. 200.
    pub code: u32,
    /// The reply text after the code, on one line.
    pub text: String,
}

/// Every reply code an ftpcalc server may send to a SITE command (success, help, and each
/// refusal `SiteError::to_reply` or libunftp can produce). FTP clients in this crate pass it to
/// suppaftp's `custom_command`, so that a refusal is a reply to look at, not an error; any
/// other code means the exchange went wrong.
pub const SITE_REPLY_CODES: [Status; 12] = [
    Status::CommandOk,
    Status::Help,
    Status::NotAvailable,
    Status::RequestFileActionIgnored,
    Status::ActionAborted,
    Status::BadCommand,
    Status::BadArguments,
    Status::NotImplemented,
    Status::BadSequence,
    Status::NotImplementedParameter,
    Status::NotLoggedIn,
    Status::FileUnavailable,
];

/// Calls workers over FTP. Cloning shares the connection pools.
#[derive(Clone)]
pub struct WorkerClient {
    user: String,
    timeout: Duration,
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<AsyncFtpStream>>>>,
}

impl std::fmt::Debug for WorkerClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("WorkerClient").field("user", &self.user).field("timeout", &self.timeout).finish()
    }
}

impl WorkerClient {
    /// A client that logs in to workers as `user` and gives up on a call after `timeout`.
    pub fn new(user: impl Into<String>, timeout: Duration) -> Self {
        WorkerClient { user: user.into(), timeout, idle: Arc::default() }
    }

    /// Sends `SITE <line>` to the worker at `address` and returns its reply.
    ///
    /// A pooled connection that turns out to be dead (the worker restarted, or closed it for
    /// idleness) is retried once on a fresh connection; everything else fails at once.
    pub async fn call(&self, address: SocketAddr, line: &str) -> Result<WorkerReply, WorkerError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.call_untimed(address, line))
            .await
            .unwrap_or(Err(WorkerError::Timeout { address, timeout }))
    }

    async fn call_untimed(&self, address: SocketAddr, line: &str) -> Result<WorkerReply, WorkerError> {
        if let Some(mut connection) = self.take_idle(address) {
            if let Ok(reply) = exchange(&mut connection, line).await {
                self.give_back(address, connection);
                return Ok(reply);
            }
            tracing::debug!(%address, "pooled worker connection failed, retrying on a new one");
        }
        let mut connection = self.connect(address).await?;
        let reply =
            exchange(&mut connection, line).await.map_err(|source| WorkerError::Exchange { address, source })?;
        self.give_back(address, connection);
        Ok(reply)
    }

    async fn connect(&self, address: SocketAddr) -> Result<AsyncFtpStream, WorkerError> {
        let mut connection =
            AsyncFtpStream::connect(address).await.map_err(|source| WorkerError::Connect { address, source })?;
        // Requests are single short lines: send them at once rather than wait for Nagle.
        let _ = connection.get_ref().await.set_nodelay(true);
        connection
            .login(self.user.as_str(), "ftpcalc")
            .await
            .map_err(|source| WorkerError::Connect { address, source })?;
        Ok(connection)
    }

    fn take_idle(&self, address: SocketAddr) -> Option<AsyncFtpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.get_mut(&address)?.pop()
    }

    fn give_back(&self, address: SocketAddr, connection: AsyncFtpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pool = idle.entry(address).or_default();
        if pool.len() < MAX_IDLE_PER_WORKER {
            pool.push(connection);
        }
    }

    /// Closes the idle connections to `address` (after the worker left the cluster).
    pub fn forget(&self, address: SocketAddr) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.remove(&address);
    }
}

async fn exchange(connection: &mut AsyncFtpStream, line: &str) -> Result<WorkerReply, FtpError> {
    let response = connection.custom_command(format!("SITE {line}"), &SITE_REPLY_CODES).await?;
    let body = String::from_utf8_lossy(&response.body);
    Ok(WorkerReply { code: response.status.code(), text: reply_text(&body) })
}

/// The text of a reply without its code, multi-line replies joined on one line.
fn reply_text(body: &str) -> String {
    body.lines()
        .map(|line| {
            let line = line.trim_end();
            let coded = line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit);
            match line.as_bytes().get(3) {
                _ if !coded => line.trim_start(),
                None => "",
                Some(b' ' | b'-') => &line[4..],
                Some(_) => line,
            }
        })
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::reply_text;

    #[test]
    fn reply_text_strips_codes_and_joins_lines() {
        assert_eq!(reply_text("200 5 (computed by SV1)\r\n"), "5 (computed by SV1)");
        assert_eq!(reply_text("200-first\r\n second\r\n200 last\r\n"), "first second last");
        assert_eq!(reply_text("200\r\n"), "");
    }
}
