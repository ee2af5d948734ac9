//! The only code that opens FTP connections from the main server to workers.
//!
//! A [`WorkerClient`] keeps, per worker address, a bounded pool of logged-in control
//! connections: at most [`WorkerClient::max_per_worker`] in use or idle at once. A request
//! waits for a free place until its deadline, takes an idle connection that passes a health
//! check (nothing unread, not closed by the worker) or opens a new one, sends one SITE line,
//! reads one reply and gives the connection back. It tries exactly once: retrying is the
//! router's decision alone ([`crate::cluster::router`]), and [`WorkerError::request_sent`]
//! tells it whether the worker may have seen the request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cluster::control::{Control, ControlError, Reply};
use crate::cluster::secret::ClusterSecret;
use crate::protocol::service_line;

/// Most connections (in use and idle) the main server keeps to one worker.
pub const DEFAULT_MAX_PER_WORKER: usize = 64;

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
    /// One permit per connection that may exist (in use or idle).
    places: Arc<Semaphore>,
    idle: Mutex<Vec<Control>>,
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
    /// A client that logs in to workers with a proof of the cluster `secret`, keeping at most
    /// `max_per_worker` connections to each.
    pub fn new(secret: ClusterSecret, max_per_worker: usize) -> Self {
        let inner = Inner { secret, max_per_worker: max_per_worker.max(1), pools: Mutex::default() };
        WorkerClient { inner: Arc::new(inner) }
    }

    /// Most connections kept to one worker.
    pub fn max_per_worker(&self) -> usize {
        self.inner.max_per_worker
    }

    fn pool(&self, address: SocketAddr) -> Arc<Pool> {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools
            .entry(address)
            .or_insert_with(|| {
                Arc::new(Pool { places: Arc::new(Semaphore::new(self.inner.max_per_worker)), idle: Mutex::default() })
            })
            .clone()
    }

    /// Sends `SITE <verb> <words>` to the worker at `address` and returns its reply, giving up
    /// at `deadline`. Tries once.
    pub async fn call(
        &self,
        address: SocketAddr,
        verb: &str,
        words: &[String],
        deadline: Instant,
    ) -> Result<Reply, WorkerError> {
        let started = Instant::now();
        let sent = AtomicBool::new(false);
        let attempt = self.attempt(address, verb, words, &sent);
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
        sent: &AtomicBool,
    ) -> Result<Reply, WorkerError> {
        let pool = self.pool(address);
        let place = pool
            .places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WorkerError::Busy { address, waited: Duration::ZERO })?;
        let mut connection = match take_healthy(&pool) {
            Some(connection) => connection,
            None => self.connect(address).await?,
        };
        sent.store(true, Ordering::Relaxed);
        let reply = connection
            .command(&format!("SITE {}", service_line(verb, words)))
            .await
            .map_err(|source| WorkerError::Exchange { address, source })?;
        pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(connection);
        drop(place);
        Ok(reply)
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

    /// Closes the idle connections to every worker whose address `keep` refuses (workers that
    /// left the registry), and forgets their pools.
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools.retain(|address, _| keep(address));
    }

    /// Closes the idle connections to `address` (after the worker failed).
    pub fn forget_idle(&self, address: SocketAddr) {
        let pool = self.pool(address);
        pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// How many idle connections are pooled for `address`.
    pub fn idle_count(&self, address: SocketAddr) -> usize {
        let pools = self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools
            .get(&address)
            .map(|pool| pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len())
            .unwrap_or(0)
    }
}

/// An idle connection that passes the health check; unhealthy ones are dropped (closed).
fn take_healthy(pool: &Pool) -> Option<Control> {
    let mut idle = pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    while let Some(connection) = idle.pop() {
        if connection.is_reusable() {
            return Some(connection);
        }
    }
    None
}
