//! What `/ready` answers and what the registry gauges show, for a cluster's main server
//! ([`ClusterStatus`]) and for a standalone worker ([`WorkerStatus`]). Both exist only once
//! every listener is bound, so "listeners bound" holds by construction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cluster::registry::Registry;
use crate::cluster::shared::SharedRegistry;
use crate::telemetry::http::Status;
use crate::telemetry::metrics::Metrics;

/// A main server: ready when every service of its catalogue has a live worker that is not
/// marked failed, and its shared registry (etcd), if it has one, is in step.
#[derive(Debug)]
pub struct ClusterStatus {
    /// The registry it routes with.
    pub registry: Registry,
    /// Every service the cluster can route.
    pub services: Vec<String>,
    /// The shared registry, if any.
    pub shared: Option<Arc<dyn SharedRegistry>>,
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
        let mut problems = Vec::new();
        if let Some(shared) = self.shared.as_ref().filter(|shared| !shared.is_online()) {
            problems.push(format!(
                "{} unreachable: routing with the last registry seen, registrations refused",
                shared.describe()
            ));
        }
        if !missing.is_empty() {
            problems.push(format!("no live worker for {}", missing.join(", ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn refresh(&self, metrics: &Metrics) {
        let workers: Vec<(String, bool)> =
            self.registry.workers().into_iter().map(|(worker, failed)| (worker.name, !failed)).collect();
        metrics.set_registry(self.registry.servers().len(), &workers);
        if let Some(shared) = &self.shared {
            metrics.set_shared_registry(shared.is_online());
        }
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
