//! Routing a service request from the main server to a worker: which worker, how long to wait,
//! when to try a second one, and when a worker is taken out of rotation. This is the one place
//! with a retry policy (see [`crate::Service`] for the rules as an embedder sees them):
//!
//! - A request goes to a worker picked round-robin among the healthy workers of its service.
//! - It is sent to at most two workers, and waits at most the worker timeout in total.
//! - It goes to a second worker when the first was never reached (connection or login failed,
//!   or its pool stayed full), or, for an idempotent service, when the first failed after the
//!   request was sent, or was slower than the service usually is (a *hedge*: the slowness
//!   threshold is the service's recent latency, smoothed as TCP smooths round-trip times,
//!   RFC 6298, plus four deviations, at least [`MIN_HEDGE_DELAY`]). The first answer wins; the
//!   other request runs to its end in the background so that its worker's fate is known.
//! - A worker that fails (refused connection, broken connection, timeout) is marked failed in
//!   the registry and not picked until a health probe (a login and `NOOP`, every
//!   [`PROBE_INTERVAL`]) answers or it renews its registration; its connections are closed.
//! - A quick service's requests ([`Handling::quick`]) may share worker connections, queued
//!   behind one another (see [`crate::cluster::worker_client`]); others never wait behind
//!   another request on a connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::control::Reply;
use crate::cluster::registry::{Registry, ServerEntry};
use crate::cluster::worker_client::{WorkerClient, WorkerError};
use crate::telemetry::metrics::SiteResult;
use crate::telemetry::Telemetry;

/// What the router may do with a service's requests ([`crate::services::Service::idempotent`]
/// and [`crate::services::Service::quick`]); both false for a service the main server does not
/// know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handling {
    /// Retrying or hedging it on a second worker does no harm.
    pub idempotent: bool,
    /// It may queue behind other requests on a shared worker connection.
    pub quick: bool,
}

/// The shortest wait before an idempotent request is hedged on a second worker.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(10);
/// How often a failed worker is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often idle connections to workers that left the registry are closed.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(2);

/// A reply and the worker that sent it.
#[derive(Debug)]
pub struct Routed {
    /// The worker that answered.
    pub worker: ServerEntry,
    /// Its reply.
    pub reply: Reply,
}

/// Why a request got no reply from any worker.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No healthy worker offers the service.
    #[error("no worker available for {0}")]
    NoWorker(String),
    /// The worker (the last one tried) failed.
    #[error("worker {} failed: {source}", .worker.name)]
    Worker {
        /// The worker.
        worker: ServerEntry,
        /// What failed.
        source: WorkerError,
    },
}

/// Smoothed latency of one service (RFC 6298 estimator).
#[derive(Clone, Copy, Debug)]
struct Latency {
    smoothed: f64,
    deviation: f64,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    workers: WorkerClient,
    timeout: Duration,
    latency: Mutex<HashMap<String, Latency>>,
    /// Set when the cluster shuts down: probes and pruning stop.
    closed: AtomicBool,
    metrics: Arc<Telemetry>,
}

/// Routes requests to workers. Cloning shares everything.
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<Inner>,
}

type Attempt = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, WorkerError>> + Send>>;

impl Router {
    /// A router over `registry` that calls workers through `workers`, each request bounded by
    /// `timeout`.
    /// `telemetry` counts every request and its latency by worker.
    pub fn new(registry: Registry, workers: WorkerClient, timeout: Duration, telemetry: Arc<Telemetry>) -> Self {
        let inner = Inner {
            registry,
            workers,
            timeout,
            latency: Mutex::default(),
            closed: AtomicBool::new(false),
            metrics: telemetry,
        };
        Router { inner: Arc::new(inner) }
    }

    /// The registry it routes with.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The worker client it calls with.
    pub fn workers(&self) -> &WorkerClient {
        &self.inner.workers
    }

    /// Sends `SITE <service> <words>` to a worker offering `service`, following the policy
    /// of this module, and counts the outcome in the metrics and the log.
    pub async fn route(&self, service: &str, words: &[String], handling: Handling) -> Result<Routed, RouteError> {
        let started = Instant::now();
        let outcome = self.route_once(service, words, handling).await;
        let took = started.elapsed();
        let (worker, result) = match &outcome {
            Ok(routed) => (
                Some(routed.worker.name.as_str()),
                match routed.reply.code {
                    200..=299 => SiteResult::Ok,
                    500..=599 => SiteResult::ClientError,
                    _ => SiteResult::Transient,
                },
            ),
            Err(RouteError::NoWorker(_)) => (None, SiteResult::Transient),
            Err(RouteError::Worker { worker, .. }) => (Some(worker.name.as_str()), SiteResult::Transient),
        };
        self.inner.metrics.metrics.site_request(service, worker, result, took);
        let (worker, label, micros) = (worker.unwrap_or("none"), result.label(), took.as_micros() as u64);
        // A request a worker answered is counted in the metrics and logged only at debug level:
        // a line per request was a line per computation (tens of thousands a second under load).
        match result {
            SiteResult::Transient => tracing::info!(service, worker, result = label, micros, "routed"),
            SiteResult::Ok | SiteResult::ClientError => {
                tracing::debug!(service, worker, result = label, micros, "routed")
            }
        }
        outcome
    }

    async fn route_once(&self, service: &str, words: &[String], handling: Handling) -> Result<Routed, RouteError> {
        let Handling { idempotent, quick } = handling;
        let deadline = Instant::now() + self.inner.timeout;
        let registry = &self.inner.registry;
        let first = registry.pick(service, None).ok_or_else(|| RouteError::NoWorker(service.to_string()))?;
        let mut attempt = self.attempt(&first, service, words, quick, deadline);
        let outcome = if idempotent {
            tokio::select! {
                outcome = &mut attempt => Some(outcome),
                () = tokio::time::sleep(self.hedge_delay(service)) => None,
            }
        } else {
            Some(attempt.as_mut().await)
        };
        let error = match outcome {
            Some(Ok(reply)) => return Ok(Routed { worker: first, reply }),
            Some(Err(error)) => error,
            None => return self.hedge(first, attempt, service, words, quick, deadline).await,
        };
        if !idempotent && error.request_sent() {
            return Err(RouteError::Worker { worker: first, source: error });
        }
        match registry.pick(service, Some(&first.name)) {
            Some(second) => {
                tracing::warn!(%error, retry_on = %second.name, "retrying on another worker");
                let outcome = self.attempt(&second, service, words, quick, deadline).await;
                outcome
                    .map(|reply| Routed { worker: second.clone(), reply })
                    .map_err(|source| RouteError::Worker { worker: second, source })
            }
            None => Err(RouteError::Worker { worker: first, source: error }),
        }
    }

    /// The first attempt is slow: races it against a second worker; the first answer wins.
    async fn hedge(
        &self,
        first: ServerEntry,
        mut attempt: Attempt,
        service: &str,
        words: &[String],
        quick: bool,
        deadline: Instant,
    ) -> Result<Routed, RouteError> {
        let Some(second) = self.inner.registry.pick(service, Some(&first.name)) else {
            return attempt
                .await
                .map(|reply| Routed { worker: first.clone(), reply })
                .map_err(|source| RouteError::Worker { worker: first, source });
        };
        tracing::debug!(slow = %first.name, hedge_on = %second.name, "hedging a slow request");
        let mut backup = self.attempt(&second, service, words, quick, deadline);
        tokio::select! {
            outcome = &mut attempt => match outcome {
                Ok(reply) => {
                    // Let the backup finish in the background, so that its connection is
                    // either returned healthy or closed, and its worker's health is learned.
                    tokio::spawn(backup);
                    Ok(Routed { worker: first, reply })
                }
                Err(_) => backup.await.map(|reply| Routed { worker: second.clone(), reply }).map_err(|source| RouteError::Worker { worker: second, source }),
            },
            outcome = &mut backup => match outcome {
                Ok(reply) => {
                    tokio::spawn(attempt);
                    Ok(Routed { worker: second, reply })
                }
                Err(_) => attempt.await.map(|reply| Routed { worker: first.clone(), reply }).map_err(|source| RouteError::Worker { worker: first, source }),
            },
        }
    }

    /// One call to `worker`, as a boxed future that owns what it needs (so that a losing hedge
    /// can be handed to the runtime), recording latency on success and failures in the registry.
    fn attempt(
        &self,
        worker: &ServerEntry,
        service: &str,
        words: &[String],
        quick: bool,
        deadline: Instant,
    ) -> Attempt {
        let router = self.clone();
        let (worker, service, words) = (worker.clone(), service.to_string(), words.to_vec());
        Box::pin(async move {
            let started = Instant::now();
            let outcome = router.inner.workers.call(worker.address, &service, &words, quick, deadline).await;
            match &outcome {
                Ok(_) => router.record(&service, started.elapsed()),
                Err(error) if error.worker_is_unwell() => router.failed(&worker, error),
                Err(_) => {}
            }
            outcome
        })
    }

    fn record(&self, service: &str, elapsed: Duration) {
        let sample = elapsed.as_secs_f64();
        let mut latency = self.inner.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match latency.get_mut(service) {
            Some(estimate) => {
                // RFC 6298 §2.3: beta = 1/4, alpha = 1/8.
                estimate.deviation = 0.75 * estimate.deviation + 0.25 * (estimate.smoothed - sample).abs();
                estimate.smoothed = 0.875 * estimate.smoothed + 0.125 * sample;
            }
            None => {
                latency.insert(service.to_string(), Latency { smoothed: sample, deviation: sample / 2.0 });
            }
        }
    }

    /// How long an idempotent request of `service` waits before it is hedged.
    pub fn hedge_delay(&self, service: &str) -> Duration {
        let latency = self.inner.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let estimate = latency.get(service).map(|estimate| estimate.smoothed + 4.0 * estimate.deviation).unwrap_or(0.0);
        Duration::from_secs_f64(estimate).clamp(MIN_HEDGE_DELAY, (self.inner.timeout / 2).max(MIN_HEDGE_DELAY))
    }

    /// Takes `worker` out of rotation and, if this call did, probes it until it answers or
    /// leaves the registry.
    fn failed(&self, worker: &ServerEntry, error: &WorkerError) {
        self.inner.metrics.metrics.worker_failed(&worker.name);
        self.inner.workers.close_connections(worker.address);
        if !self.inner.registry.mark_failed(&worker.name) {
            return;
        }
        tracing::warn!(worker = %worker.name, %error, "worker failed; not picked until a health probe answers");
        let router = self.clone();
        let name = worker.name.clone();
        tokio::spawn(async move { router.probe_until_healthy(&name).await });
    }

    async fn probe_until_healthy(&self, name: &str) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if self.is_closed() {
                return;
            }
            match self.inner.registry.state(name) {
                Some((entry, true)) => {
                    if self.inner.workers.probe(entry.address, Instant::now() + self.inner.timeout).await {
                        tracing::info!(worker = name, "worker answers again");
                        self.inner.registry.mark_healthy(name);
                        return;
                    }
                }
                // Healthy again (it renewed its registration) or gone from the registry.
                _ => return,
            }
        }
    }

    /// Closes the idle connections to workers that left the registry.
    pub fn prune(&self) {
        let live = self.inner.registry.addresses();
        self.inner.workers.retain(|address| live.contains(address));
        let services = self.inner.registry.services();
        let mut latency = self.inner.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        latency.retain(|service, _| services.contains(service));
    }

    /// Prunes every [`PRUNE_INTERVAL`] until [`Router::close`].
    pub async fn maintain(self) {
        while !self.is_closed() {
            tokio::time::sleep(PRUNE_INTERVAL).await;
            self.prune();
        }
    }

    /// Stops probing and pruning (the cluster is shutting down).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.workers.retain(|_| false);
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }
}
