//! [`Metrics`]: every figure the servers of one process export, in a Prometheus registry of
//! their own (not the crate's global one, so two clusters in one process, as in the tests, keep
//! separate counts). Counters and histograms are atomics; a labelled child is looked up under
//! the family's read lock, never a process-wide one.
//!
//! Label values come from the operator's configuration (server and service names) or from the
//! registry (worker names, which only holders of the cluster secret can add); to keep the
//! series bounded whatever the registry sees over time, at most [`MAX_WORKER_LABELS`] worker
//! names get series of their own and later ones are counted as `other`.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Most worker names with series of their own.
pub const MAX_WORKER_LABELS: usize = 256;

/// Buckets of a routed SITE request's latency (seconds): 100 µs to 10 s.
const SITE_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of a transfer's duration (seconds): 1 ms to 30 min.
const TRANSFER_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// How a routed SITE request ended, as the `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteResult {
    /// The worker answered `200`.
    Ok,
    /// The request was refused as the client's fault (`5xx`).
    ClientError,
    /// No worker could answer now (`451`).
    Transient,
}

impl SiteResult {
    /// `ok`, `client_error` or `transient`.
    pub fn label(self) -> &'static str {
        match self {
            SiteResult::Ok => "ok",
            SiteResult::ClientError => "client_error",
            SiteResult::Transient => "transient",
        }
    }
}

/// Which way a file went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `RETR`: from the server to the client.
    Download,
    /// `STOR`, `APPE`, `STOU`: from the client to the server.
    Upload,
}

impl Direction {
    /// `download` or `upload`.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }
}

/// Why a connection was turned away, as the `reason` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// `max_connections` reached.
    TooMany,
    /// `max_connections_per_ip` reached.
    TooManyFromAddress,
    /// The address is locked out after failed logins.
    LockedOut,
    /// `--proxy-protocol`: the connection did not start with a valid PROXY header.
    ProxyHeader,
}

impl RefusalReason {
    fn label(self) -> &'static str {
        match self {
            RefusalReason::TooMany => "max_connections",
            RefusalReason::TooManyFromAddress => "max_connections_per_ip",
            RefusalReason::LockedOut => "lockout",
            RefusalReason::ProxyHeader => "proxy_header",
        }
    }
}

/// The metrics of every server in one process.
pub struct Metrics {
    registry: Registry,
    site_requests: IntCounterVec,
    site_duration: HistogramVec,
    worker_up: IntGaugeVec,
    worker_failures: IntCounterVec,
    registry_servers: IntGauge,
    /// Registered on first use: only main servers with a shared registry export it.
    shared_registry_in_step: std::sync::OnceLock<IntGauge>,
    connections_open: IntGaugeVec,
    connections_accepted: IntCounterVec,
    connections_refused: IntCounterVec,
    logins: IntCounterVec,
    /// The transfer series of each [`Direction`], looked up once.
    downloads: TransferSeries,
    uploads: TransferSeries,
    workers_seen: RwLock<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The transfer metrics' series of one direction: one lookup of the label when the metrics are
/// made instead of four per transfer (hashing the label under the family's lock); a server's
/// series show from the start, at zero.
struct TransferSeries {
    complete: IntCounter,
    failed: IntCounter,
    bytes: IntCounter,
    duration: Histogram,
}

impl TransferSeries {
    /// Registers the transfer metrics' families and returns the series of downloads and of
    /// uploads.
    fn register(r: &Registry) -> (TransferSeries, TransferSeries) {
        let complete =
            counter(r, "ftpcalc_transfers_total", "Files transferred completely, by direction.", &["direction"]);
        let failed = counter(
            r,
            "ftpcalc_transfer_failures_total",
            "Transfers that failed or were cut off, by direction.",
            &["direction"],
        );
        let bytes = counter(
            r,
            "ftpcalc_transfer_bytes_total",
            "Bytes moved by transfers (complete or not), by direction.",
            &["direction"],
        );
        let duration = histogram(
            r,
            "ftpcalc_transfer_duration_seconds",
            "Duration of complete transfers, by direction.",
            &["direction"],
            TRANSFER_BUCKETS,
        );
        let series = |direction: Direction| {
            let label = [direction.label()];
            TransferSeries {
                complete: complete.with_label_values(&label),
                failed: failed.with_label_values(&label),
                bytes: bytes.with_label_values(&label),
                duration: duration.with_label_values(&label),
            }
        };
        (series(Direction::Download), series(Direction::Upload))
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry.register(Box::new(family.clone())).expect("each metric registered once");
    family
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let family = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry.register(Box::new(family.clone())).expect("each metric registered once");
    family
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let family = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("a valid metric definition");
    registry.register(Box::new(family.clone())).expect("each metric registered once");
    family
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let registry_servers = IntGauge::new("ftpcalc_registry_servers", "Servers in the main server's registry.")
            .expect("a valid metric definition");
        r.register(Box::new(registry_servers.clone())).expect("each metric registered once");
        let (downloads, uploads) = TransferSeries::register(r);
        Metrics {
            site_requests: counter(
                r,
                "ftpcalc_site_requests_total",
                "Routed SITE service requests by service, worker that answered (none if none did) and result.",
                &["service", "worker", "result"],
            ),
            site_duration: histogram(
                r,
                "ftpcalc_site_request_duration_seconds",
                "Time from a routed SITE request's arrival on the main server to its answer, by service and worker.",
                &["service", "worker"],
                SITE_BUCKETS,
            ),
            worker_up: gauge(
                r,
                "ftpcalc_worker_up",
                "1 if the worker is registered and not marked failed, else 0.",
                &["worker"],
            ),
            worker_failures: counter(
                r,
                "ftpcalc_worker_failures_total",
                "Requests to a worker that failed (connection, timeout, broken reply).",
                &["worker"],
            ),
            registry_servers,
            shared_registry_in_step: std::sync::OnceLock::new(),
            connections_open: gauge(r, "ftpcalc_connections_open", "Control connections open, by server.", &["server"]),
            connections_accepted: counter(
                r,
                "ftpcalc_connections_accepted_total",
                "Control connections admitted, by server.",
                &["server"],
            ),
            connections_refused: counter(
                r,
                "ftpcalc_connections_refused_total",
                "Control connections turned away with 421, by server and reason.",
                &["server", "reason"],
            ),
            logins: counter(
                r,
                "ftpcalc_logins_total",
                "Logins by server and result (ok, failed).",
                &["server", "result"],
            ),
            downloads,
            uploads,
            workers_seen: RwLock::default(),
            registry,
        }
    }

    /// The worker's label: its name, or `other` once [`MAX_WORKER_LABELS`] names have series.
    fn worker_label<'a>(&self, worker: &'a str) -> &'a str {
        let seen = self.workers_seen.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(worker) {
            return worker;
        }
        drop(seen);
        let mut seen = self.workers_seen.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() < MAX_WORKER_LABELS {
            seen.insert(worker.to_string());
            worker
        } else {
            "other"
        }
    }

    /// A routed SITE request ended: answered by `worker` (`None`: no worker answered).
    pub fn site_request(&self, service: &str, worker: Option<&str>, result: SiteResult, took: Duration) {
        let worker = worker.map_or("none", |worker| self.worker_label(worker));
        self.site_requests.with_label_values(&[service, worker, result.label()]).inc();
        self.site_duration.with_label_values(&[service, worker]).observe(took.as_secs_f64());
    }

    /// A request to `worker` failed (the router marks it failed until a probe answers).
    pub fn worker_failed(&self, worker: &str) {
        self.worker_failures.with_label_values(&[self.worker_label(worker)]).inc();
    }

    /// The registry as it is now: how many servers, and which workers are up. Called before
    /// each scrape.
    pub fn set_registry(&self, servers: usize, workers: &[(String, bool)]) {
        self.registry_servers.set(i64::try_from(servers).unwrap_or(i64::MAX));
        self.worker_up.reset();
        for (worker, up) in workers {
            self.worker_up.with_label_values(&[self.worker_label(worker)]).set(i64::from(*up));
        }
    }

    /// Whether the main server is in step with its shared registry (etcd): 1, or 0 while it
    /// routes with the last registry it saw. The gauge exists only once this is called.
    pub fn set_shared_registry(&self, in_step: bool) {
        let gauge = self.shared_registry_in_step.get_or_init(|| {
            let gauge = IntGauge::new(
                "ftpcalc_registry_shared_in_step",
                "1 while the main server follows its shared registry (etcd), 0 while it cannot reach it.",
            )
            .expect("a valid metric definition");
            let _ = self.registry.register(Box::new(gauge.clone()));
            gauge
        });
        gauge.set(i64::from(in_step));
    }

    /// A control connection to `server` was admitted; the gauge of open connections goes down
    /// when the returned guard is dropped.
    pub fn connection_opened(&self, server: &str) -> OpenConnection {
        self.connections_accepted.with_label_values(&[server]).inc();
        let open = self.connections_open.with_label_values(&[server]);
        open.inc();
        OpenConnection(open)
    }

    /// A control connection to `server` was turned away.
    pub fn connection_refused(&self, server: &str, reason: RefusalReason) {
        self.connections_refused.with_label_values(&[server, reason.label()]).inc();
    }

    /// A login to `server` succeeded (`true`) or was refused.
    pub fn login(&self, server: &str, ok: bool) {
        self.logins.with_label_values(&[server, if ok { "ok" } else { "failed" }]).inc();
    }

    /// A transfer ended after moving `bytes`: complete (`ok`) or not.
    pub fn transfer(&self, direction: Direction, bytes: u64, took: Duration, ok: bool) {
        let series = match direction {
            Direction::Download => &self.downloads,
            Direction::Upload => &self.uploads,
        };
        series.bytes.inc_by(bytes);
        if ok {
            series.complete.inc();
            series.duration.observe(took.as_secs_f64());
        } else {
            series.failed.inc();
        }
    }

    /// Every metric in Prometheus's text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        // Encoding metrics we built ourselves into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut text);
        String::from_utf8(text).unwrap_or_default()
    }
}

/// One open control connection, counted in `ftpcalc_connections_open` while it lives.
#[derive(Debug)]
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let metrics = Metrics::new();
        let before = metrics.render();
        for line in [
            "ftpcalc_transfers_total{direction=\"download\"} 0",
            "ftpcalc_transfer_bytes_total{direction=\"upload\"} 0",
        ] {
            assert!(before.contains(line), "{line} missing from\n{before}");
        }
        metrics.site_request("ADD", Some("SV1"), SiteResult::Ok, Duration::from_millis(2));
        metrics.site_request("ADD", None, SiteResult::Transient, Duration::from_millis(1));
        {
            let _open = metrics.connection_opened("SV0");
            assert!(metrics.render().contains("ftpcalc_connections_open{server=\"SV0\"} 1"));
        }
        metrics.transfer(Direction::Upload, 10, Duration::from_millis(3), true);
        metrics.transfer(Direction::Upload, 4, Duration::from_millis(3), false);
        let text = metrics.render();
        for line in [
            "ftpcalc_site_requests_total{result=\"ok\",service=\"ADD\",worker=\"SV1\"} 1",
            "ftpcalc_site_requests_total{result=\"transient\",service=\"ADD\",worker=\"none\"} 1",
            "ftpcalc_site_request_duration_seconds_count{service=\"ADD\",worker=\"SV1\"} 1",
            "ftpcalc_connections_open{server=\"SV0\"} 0",
            "ftpcalc_connections_accepted_total{server=\"SV0\"} 1",
            "ftpcalc_transfers_total{direction=\"upload\"} 1",
            "ftpcalc_transfer_failures_total{direction=\"upload\"} 1",
            "ftpcalc_transfer_bytes_total{direction=\"upload\"} 14",
            "ftpcalc_transfer_duration_seconds_count{direction=\"upload\"} 1",
            "ftpcalc_transfers_total{direction=\"download\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn worker_names_beyond_the_bound_share_one_series() {
        let metrics = Metrics::new();
        for index in 0..MAX_WORKER_LABELS + 10 {
            metrics.worker_failed(&format!("W{index}"));
        }
        let text = metrics.render();
        assert_eq!(text.matches("ftpcalc_worker_failures_total{").count(), MAX_WORKER_LABELS + 1);
        assert!(text.contains("ftpcalc_worker_failures_total{worker=\"other\"} 10"));
    }
}
