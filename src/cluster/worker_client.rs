//! The only code that opens FTP connections from the main server to workers.
//!
//! A [`WorkerClient`] keeps, per worker address, at most [`WorkerClient::max_per_worker`]
//! requests in flight over at most [`WorkerClient::max_connections`] logged-in control
//! connections, each a [`Pipeline`] that many requests share. A request waits for a place
//! until its deadline, takes a connection with nothing in flight, or opens one while there is
//! room, or else queues on the one with the fewest requests in flight; it sends one SITE line
//! and waits for its reply. It tries once: retrying is the router's decision alone
//! ([`crate::cluster::router`]), and [`WorkerError::request_sent`] tells it whether the worker
//! may have seen the request. The one exception is a request the worker provably never read
//! (it closed the connection with `421`, its idle timeout, as the request came): that one is
//! sent again on a new connection, once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::cluster::control::{Control, ControlError, Reply};
use crate::cluster::pipeline::Pipeline;
use crate::cluster::secret::ClusterSecret;
use crate::protocol::service_line;

/// Most requests the main server has in flight to one worker.
pub const DEFAULT_MAX_PER_WORKER: usize = 64;

/// Most connections that quick requests to one worker share: requests beyond this many at once
/// queue on them (pipelined). A worker answers each connection's commands in turn, so quick
/// requests to one worker are computed at most this many at once; two keep the batches long
/// (on two cores, routed `SITE ADD` at 64 connections ran 57-59k ops/s with two against
/// 45-57k with four, alternating runs) while a long computation holds up only the requests
/// behind it on its own connection.
pub const CONNECTIONS_PER_WORKER: usize = 2;

/// Why a call to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker could not be reached or logged in to: the request was not sent.
    #[error("cannot connect to worker at {address}: {source}")]
    Connect {
        /// The worker's address.
        address: SocketAddr,
        /// What failed.
        source: ControlError,
    },
    /// Every connection to the worker stayed busy until the deadline: the request was not sent.
    #[error("worker at {address} had no free connection within {waited:?}")]
    Busy {
        /// The worker's address.
        address: SocketAddr,
        /// How long the request waited.
        waited: Duration,
    },
    /// The connection failed after the request was sent.
    #[error("worker at {address} failed during the request: {source}")]
    Exchange {
        /// The worker's address.
        address: SocketAddr,
        /// What failed.
        source: ControlError,
    },
    /// The worker did not answer in time (the request was sent, or the connection or login
    /// hung).
    #[error("worker at {address} did not answer within {waited:?}")]
    Timeout {
        /// The worker's address.
        address: SocketAddr,
        /// How long the request waited.
        waited: Duration,
        /// Whether the request line had been sent.
        sent: bool,
    },
}

impl WorkerError {
    /// True when the worker may have received (and carried out) the request.
    pub fn request_sent(&self) -> bool {
        match self {
            WorkerError::Connect { .. } | WorkerError::Busy { .. } => false,
            WorkerError::Exchange { .. } => true,
            WorkerError::Timeout { sent, .. } => *sent,
        }
    }

    /// True when the failure says the worker is down or hung (not merely loaded).
    pub fn worker_is_unwell(&self) -> bool {
        !matches!(self, WorkerError::Busy { .. })
    }
}

/// The connections to one worker.
#[derive(Debug)]
struct Pool {
    /// One permit per request in flight.
    places: Arc<Semaphore>,
    lines: Mutex<Lines>,
    /// Woken when a connection being opened is open, or failed to open.
    opened: Notify,
}

#[derive(Debug, Default)]
struct Lines {
    open: Vec<Arc<Pipeline>>,
    /// Connections being opened.
    opening: usize,
}

impl Pool {
    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a request does for a connection.
enum Choice {
    Use(Arc<Pipeline>),
    Open,
    Wait,
}

/// Counts a connection being opened until it is open or failed (or the request gave up).
struct Opening<'a>(&'a Pool);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.lines().opening -= 1;
        self.0.opened.notify_waiters();
    }
}

/// Closes a connection whose request was given up before its reply came (the caller's
/// deadline passed: the worker hangs or is slow, and the reply would answer nobody).
struct CloseUnlessAnswered(Option<Arc<Pipeline>>);

impl Drop for CloseUnlessAnswered {
    fn drop(&mut self) {
        if let Some(pipeline) = self.0.take() {
            pipeline.close();
        }
    }
}

#[derive(Debug)]
struct Inner {
    secret: ClusterSecret,
    max_per_worker: usize,
    pools: Mutex<HashMap<SocketAddr, Arc<Pool>>>,
}

/// Calls workers over FTP. Cloning shares the connection pools.
#[derive(Clone, Debug)]
pub struct WorkerClient {
    inner: Arc<Inner>,
}

impl WorkerClient {
    /// A client that logs in to workers with a proof of the cluster `secret`, with at most
    /// `max_per_worker` requests in flight to each.
    pub fn new(secret: ClusterSecret, max_per_worker: usize) -> Self {
        let inner = Inner { secret, max_per_worker: max_per_worker.max(1), pools: Mutex::default() };
        WorkerClient { inner: Arc::new(inner) }
    }

    /// Most requests in flight to one worker.
    pub fn max_per_worker(&self) -> usize {
        self.inner.max_per_worker
    }

    /// Most connections kept to one worker.
    pub fn max_connections(&self) -> usize {
        self.inner.max_per_worker.min(CONNECTIONS_PER_WORKER)
    }

    fn pools(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Pool>>> {
        self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pool(&self, address: SocketAddr) -> Arc<Pool> {
        self.pools()
            .entry(address)
            .or_insert_with(|| {
                Arc::new(Pool {
                    places: Arc::new(Semaphore::new(self.inner.max_per_worker)),
                    lines: Mutex::default(),
                    opened: Notify::new(),
                })
            })
            .clone()
    }

    /// Sends `SITE <verb> <words>` to the worker at `address` and returns its reply, giving up
    /// at `deadline`. Tries once. A `quick` request may queue behind others on a shared
    /// connection; any other has a connection to itself while it runs.
    pub async fn call(
        &self,
        address: SocketAddr,
        verb: &str,
        words: &[String],
        quick: bool,
        deadline: Instant,
    ) -> Result<Reply, WorkerError> {
        let started = Instant::now();
        let sent = AtomicBool::new(false);
        let attempt = self.attempt(address, verb, words, quick, &sent);
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(result) => result,
            Err(_) if !sent.load(Ordering::Relaxed) && self.is_full(address) => {
                Err(WorkerError::Busy { address, waited: started.elapsed() })
            }
            Err(_) => {
                Err(WorkerError::Timeout { address, waited: started.elapsed(), sent: sent.load(Ordering::Relaxed) })
            }
        }
    }

    async fn attempt(
        &self,
        address: SocketAddr,
        verb: &str,
        words: &[String],
        quick: bool,
        sent: &AtomicBool,
    ) -> Result<Reply, WorkerError> {
        let pool = self.pool(address);
        let _place = pool
            .places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WorkerError::Busy { address, waited: Duration::ZERO })?;
        let line = format!("SITE {}", service_line(verb, words));
        let mut dismissed = false;
        loop {
            let pipeline = self.pipeline(&pool, address, quick).await?;
            let mut guard = CloseUnlessAnswered(Some(pipeline.clone()));
            let reply = pipeline.request(&line, quick, sent).await;
            guard.0 = None;
            return match reply {
                Ok(reply) => Ok(reply),
                // The worker closed an idle connection just as the request came, without reading
                // it: it is sent once more on a new connection, whatever the service.
                Err(ControlError::Dismissed(_)) if !dismissed => {
                    dismissed = true;
                    continue;
                }
                Err(source @ ControlError::Dismissed(_)) => Err(WorkerError::Connect { address, source }),
                Err(source) if sent.load(Ordering::Relaxed) => Err(WorkerError::Exchange { address, source }),
                Err(source) => Err(WorkerError::Connect { address, source }),
            };
        }
    }

    /// The connection for the next request: an open one with nothing in flight, else a new
    /// one while there is room: [`WorkerClient::max_connections`] for a `quick` request,
    /// [`WorkerClient::max_per_worker`] (one per request in flight) for others. Beyond that a
    /// quick request queues on the open connection with the fewest requests in flight among
    /// those carrying only quick ones, or waits for one being opened.
    async fn pipeline(&self, pool: &Pool, address: SocketAddr, quick: bool) -> Result<Arc<Pipeline>, WorkerError> {
        let room_for = if quick { self.max_connections() } else { self.inner.max_per_worker };
        loop {
            let opened = pool.opened.notified();
            let choice = {
                let mut lines = pool.lines();
                lines.open.retain(|pipeline| pipeline.is_open());
                let in_use = lines.open.len() + lines.opening;
                let idle = lines.open.iter().find(|pipeline| pipeline.in_flight() == 0).cloned();
                let shared = if quick && idle.is_none() { least_loaded_quick(&lines.open) } else { None };
                let choice = match (idle, shared) {
                    (Some(pipeline), _) => Choice::Use(pipeline),
                    (None, _) if in_use < room_for => Choice::Open,
                    (None, Some(pipeline)) => Choice::Use(pipeline),
                    // The quick connections are still being opened: wait for them.
                    (None, None) if quick && lines.opening > 0 => Choice::Wait,
                    (None, None) if in_use < self.inner.max_per_worker => Choice::Open,
                    (None, None) => Choice::Wait,
                };
                if let Choice::Open = choice {
                    lines.opening += 1;
                }
                choice
            };
            match choice {
                Choice::Use(pipeline) => return Ok(pipeline),
                Choice::Wait => opened.await,
                Choice::Open => {
                    let _opening = Opening(pool);
                    let connection = self.connect(address).await?;
                    let pipeline = Arc::new(
                        Pipeline::start(connection).map_err(|source| WorkerError::Connect { address, source })?,
                    );
                    pool.lines().open.push(pipeline.clone());
                    return Ok(pipeline);
                }
            }
        }
    }

    fn is_full(&self, address: SocketAddr) -> bool {
        self.pool(address).places.available_permits() == 0
    }

    /// A new logged-in connection to `address`.
    pub async fn connect(&self, address: SocketAddr) -> Result<Control, WorkerError> {
        let connect = |source| WorkerError::Connect { address, source };
        let connection = Control::connect(address).await.map_err(connect)?;
        let (mut connection, _) = connection.secure_if_offered().await.map_err(connect)?;
        connection.login_cluster(&self.inner.secret).await.map_err(connect)?;
        Ok(connection)
    }

    /// Checks that the worker at `address` accepts a new login and answers `NOOP` before
    /// `deadline` (the health probe of a worker that failed).
    pub async fn probe(&self, address: SocketAddr, deadline: Instant) -> bool {
        let check = async {
            let mut connection = self.connect(address).await.ok()?;
            let reply = connection.command("NOOP").await.ok()?;
            connection.quit().await;
            (reply.code == 200).then_some(())
        };
        matches!(tokio::time::timeout_at(deadline, check).await, Ok(Some(())))
    }

    /// Forgets the pools of every worker whose address `keep` refuses (workers that left the
    /// registry): their idle connections close at once, busy ones when their requests end.
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        let gone: Vec<Arc<Pool>> = {
            let mut pools = self.pools();
            let gone = pools.iter().filter(|(address, _)| !keep(address)).map(|(_, pool)| pool.clone()).collect();
            pools.retain(|address, _| keep(address));
            gone
        };
        for pool in gone {
            forget_all(&pool);
        }
    }

    /// Lets go of the connections to `address` (after the worker failed): idle ones close at
    /// once; busy ones take no new request and close when the requests on them end (a request
    /// in flight is never failed for another's failure).
    pub fn close_connections(&self, address: SocketAddr) {
        let pool = self.pools().get(&address).cloned();
        if let Some(pool) = pool {
            forget_all(&pool);
        }
    }

    /// How many connections to `address` are open.
    pub fn open_connections(&self, address: SocketAddr) -> usize {
        let pool = self.pools().get(&address).cloned();
        pool.map(|pool| pool.lines().open.iter().filter(|pipeline| pipeline.is_open()).count()).unwrap_or(0)
    }
}

/// The open connection with the fewest requests in flight among those carrying only quick ones.
fn least_loaded_quick(open: &[Arc<Pipeline>]) -> Option<Arc<Pipeline>> {
    open.iter().filter(|pipeline| pipeline.only_quick()).min_by_key(|pipeline| pipeline.in_flight()).cloned()
}

/// Takes every connection out of `pool`: one nobody else holds closes now (its drop), one a
/// request holds closes when the last request on it ends.
fn forget_all(pool: &Pool) {
    let open = std::mem::take(&mut pool.lines().open);
    drop(open);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A worker that logs anyone in (no TLS) and answers `SITE ADD 2 3` with `200 5` on every
    /// connection but the first, which it closes with `421` instead (its idle timeout firing as
    /// the request comes). Reports every SITE line it reads.
    async fn dismissing_worker() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (seen, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for connection in 0.. {
                let Ok((stream, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (reader, mut writer) = stream.into_split();
                    let _ = writer.write_all(b"220 hi\r\n").await;
                    let mut lines = BufReader::new(reader).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let answer: &[u8] = match line.split(' ').next() {
                            Some("AUTH") => b"502 no TLS here\r\n",
                            Some("USER") => b"331 password\r\n",
                            Some("PASS") => b"230 in\r\n",
                            Some("SITE") if connection == 0 => {
                                let _ =
                                    writer.write_all(b"421 Session timed out. Closing control connection\r\n").await;
                                return;
                            }
                            Some("SITE") => {
                                let _ = seen.send(line.clone());
                                b"200 5 (computed by SV1)\r\n"
                            }
                            _ => b"500 what\r\n",
                        };
                        if writer.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (address, heard)
    }

    #[tokio::test]
    async fn a_request_the_worker_closed_the_connection_on_unread_is_sent_once_more_on_a_new_one() {
        let (address, mut heard) = dismissing_worker().await;
        let client = WorkerClient::new(ClusterSecret::generate().0, 4);
        let deadline = Instant::now() + Duration::from_secs(10);
        for quick in [false, true] {
            let words = ["2".to_string(), "3".to_string()];
            let reply = client.call(address, "ADD", &words, quick, deadline).await.expect("answered");
            assert_eq!((reply.code, reply.text()), (200, "5 (computed by SV1)".to_string()));
            assert_eq!(heard.recv().await.as_deref(), Some("SITE ADD 2 3"), "carried out once");
        }
        assert!(heard.try_recv().is_err(), "never twice");
    }
}
