//! What `/ready` answers and what the registry gauges show, for a cluster's main server
//! ([`ClusterStatus`]) and for a standalone worker ([`WorkerStatus`]). Both exist only once
//! every listener is bound, so "listeners bound" holds by construction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cluster::registry::Registry;
use crate::telemetry::http::Status;
use crate::telemetry::metrics::Metrics;

/// A main server: ready when every service of its catalogue has a live worker that is not
/// marked failed.
#[derive(Debug)]
pub struct ClusterStatus {
    /// The registry it routes with.
    pub registry: Registry,
    /// Every service the cluster can route.
    pub services: Vec<String>,
}

impl Status for ClusterStatus {
    fn ready(&self) -> Result<(), String> {
        let workers = self.registry.workers();
        let missing: Vec<&str> = self
            .services
            .iter()
            .filter(|service| !workers.iter().any(|(worker, failed)| !failed && worker.offers(service)))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no live worker for {}", missing.join(", ")))
        }
    }

    fn refresh(&self, metrics: &Metrics) {
        let workers: Vec<(String, bool)> =
            self.registry.workers().into_iter().map(|(worker, failed)| (worker.name, !failed)).collect();
        metrics.set_registry(self.registry.servers().len(), &workers);
    }
}

/// A standalone worker: ready while its registration with the main server holds.
#[derive(Debug)]
pub struct WorkerStatus {
    /// Set by the heartbeat.
    pub registered: Arc<AtomicBool>,
}

impl Status for WorkerStatus {
    fn ready(&self) -> Result<(), String> {
        if self.registered.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not registered with the main server".into())
        }
    }
}
