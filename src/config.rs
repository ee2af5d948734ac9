//! Configuration of a cluster: [`ClusterConfig`], [`ServerOptions`] and [`WorkerSpec`], with the
//! defaults the command line uses; [`access`] for accounts, TLS and limits; [`file`](mod@file) reads the
//! TOML configuration file. Only [`file`](mod@file) does I/O; [`crate::bootstrap`] checks and applies
//! the rest.

pub mod access;
pub mod file;
pub mod worker_spec;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::secret::ClusterSecret;
use crate::services::{ADD, INC, MUL, SUB};
pub use access::{AccessConfig, Limits, TlsConfig, TlsSource};
pub use worker_spec::{WorkerSpec, WorkerSpecError};

/// Where the main server listens unless told otherwise: loopback, port 2121.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2121";
/// The main server's default name.
pub const DEFAULT_MAIN_NAME: &str = "SV0";
/// How long the main server waits for a worker's answer before replying `451`.
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for open connections before closing them.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// How long a remote worker's registration lasts unless it renews it with a heartbeat.
pub const DEFAULT_WORKER_TTL: Duration = Duration::from_secs(10);
/// How often a remote worker renews its registration.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);
/// Seconds of inactivity after which a session is closed (libunftp's default).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 600;

/// Everything needed to start a cluster: a main server and its workers.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The main server's name.
    pub main_name: String,
    /// The FTP folder every server serves (created if missing).
    pub root: PathBuf,
    /// The main server's address.
    pub listen: SocketAddr,
    /// Services the main server computes itself instead of routing (none by default).
    pub main_services: Vec<String>,
    /// The workers to start.
    pub workers: Vec<WorkerSpec>,
    /// How long the main server waits for a worker's answer.
    pub worker_timeout: Duration,
    /// Settings every FTP server of the cluster shares.
    pub options: ServerOptions,
    /// The cluster secret workers in other processes prove to register; `None` refuses
    /// every remote registration.
    pub secret: Option<ClusterSecret>,
    /// How long a remote worker's registration lasts unless renewed.
    pub worker_ttl: Duration,
}

/// Settings of one FTP server, shared by the servers of a cluster and by standalone workers.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// How long a shutdown waits for open connections.
    pub grace_period: Duration,
    /// Ports for passive data connections; `None` for libunftp's default (49152-65535).
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// The address PASV announces (NAT, containers: the address clients reach), an IPv4 address
    /// or a DNS name; `None` for the control connection's own address.
    pub passive_host: Option<String>,
    /// Accounts, TLS and limits.
    pub access: AccessConfig,
    /// Apply no-clobber to every upload (`STOR x` stores `x_copy1` when `x` exists); off by
    /// default, so that `STOR` replaces as RFC 959 says unless a session asks for no-clobber.
    pub no_clobber: bool,
    /// Close sessions still open when a shutdown's grace period is over (one extra file
    /// descriptor per session); on by default, the binary turns it off because it exits.
    pub close_on_stop: bool,
    /// Where the HTTP endpoint (`/metrics`, `/health`, `/ready`) listens; `None`: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// The xferlog-format transfer log; `None`: none.
    pub transfer_log: Option<PathBuf>,
    /// etcd endpoints (`HOST:PORT`) of the registry a main server shares with other main
    /// servers; empty: the registry lives in this process. Standalone workers ignore it.
    pub registry: Vec<String>,
    /// Every control connection starts with a PROXY protocol header (v1 or v2, from HAProxy
    /// and the like) giving the client's real address; connections without one are refused.
    pub proxy_protocol: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            grace_period: DEFAULT_GRACE_PERIOD,
            passive_ports: None,
            passive_host: None,
            access: AccessConfig::default(),
            no_clobber: false,
            close_on_stop: true,
            metrics_listen: None,
            transfer_log: None,
            registry: Vec::new(),
            proxy_protocol: false,
        }
    }
}

impl ClusterConfig {
    /// The default cluster: main server `main_name` on [`DEFAULT_LISTEN`] serving `root`, and one
    /// worker per arithmetic service (`SV1` ADD, `SV2` SUB, `SV3` MUL, `SV4` INC) on the next ports.
    pub fn new(main_name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        ClusterConfig {
            main_name: main_name.into(),
            root: root.into(),
            listen: DEFAULT_LISTEN.parse().expect("DEFAULT_LISTEN is a valid address"),
            main_services: Vec::new(),
            workers: default_workers(),
            worker_timeout: DEFAULT_WORKER_TIMEOUT,
            options: ServerOptions::default(),
            secret: None,
            worker_ttl: DEFAULT_WORKER_TTL,
        }
    }

    /// Sets the main server's address.
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.listen = address;
        self
    }

    /// Replaces the workers.
    pub fn workers(mut self, workers: Vec<WorkerSpec>) -> Self {
        self.workers = workers;
        self
    }

    /// The address worker number `position` (0-based) listens on.
    pub fn worker_address(&self, position: usize) -> SocketAddr {
        let worker = &self.workers[position];
        worker.listen.unwrap_or_else(|| {
            let mut address = self.listen;
            if address.port() != 0 {
                address.set_port(address.port().saturating_add(position as u16 + 1));
            }
            address
        })
    }
}

/// One worker per arithmetic service: `SV1` ADD, `SV2` SUB, `SV3` MUL, `SV4` INC.
pub fn default_workers() -> Vec<WorkerSpec> {
    [ADD, SUB, MUL, INC]
        .iter()
        .enumerate()
        .map(|(index, service)| WorkerSpec::new(format!("SV{}", index + 1), &[service]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_workers_sit_next_to_the_main_server() {
        let config = ClusterConfig::new("SV0", "ftp-folder");
        assert_eq!(config.workers.len(), 4);
        assert_eq!(config.worker_address(0).port(), 2122);
        assert_eq!(config.worker_address(3).port(), 2125);
        let ephemeral = config.listen("127.0.0.1:0".parse().expect("literal"));
        assert_eq!(ephemeral.worker_address(2).port(), 0);
    }
}
