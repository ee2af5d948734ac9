//! Configuration of a cluster: [`ClusterConfig`] and [`WorkerSpec`], with the defaults the
//! command line uses. No I/O here; [`crate::cluster`] checks and applies it.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::cluster::secret::ClusterSecret;
use crate::services::{is_valid_name, ADD, INC, MUL, SUB};

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

/// One worker server to start next to the main server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// Its name, e.g. `SV1`.
    pub name: String,
    /// The services it computes, upper case.
    pub services: Vec<String>,
    /// Where it listens; `None` puts it next to the main server (main port + its position, or an
    /// ephemeral port when the main server's port is 0).
    pub listen: Option<SocketAddr>,
}

/// Why a worker specification does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker {spec:?}: {reason}; expected NAME=SERVICE[+SERVICE...][@HOST:PORT], e.g. SV1=ADD+SUB@127.0.0.1:2122")]
pub struct WorkerSpecError {
    spec: String,
    reason: String,
}

impl WorkerSpec {
    /// A worker called `name` offering `services`, placed next to the main server.
    pub fn new(name: impl Into<String>, services: &[&str]) -> Self {
        WorkerSpec {
            name: name.into(),
            services: services.iter().map(|service| service.to_ascii_uppercase()).collect(),
            listen: None,
        }
    }
}

impl std::fmt::Display for WorkerSpec {
    /// `NAME=SERVICE[+SERVICE...][@HOST:PORT]`, the form [`WorkerSpec::from_str`] parses.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}={}", self.name, self.services.join("+"))?;
        match self.listen {
            Some(address) => write!(formatter, "@{address}"),
            None => Ok(()),
        }
    }
}

impl FromStr for WorkerSpec {
    type Err = WorkerSpecError;

    /// Parses `NAME=SERVICE[+SERVICE...][@HOST:PORT]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| WorkerSpecError { spec: spec.to_string(), reason: reason.to_string() };
        let (name, rest) = spec.split_once('=').ok_or_else(|| error("no '='"))?;
        let (services, listen) = match rest.split_once('@') {
            Some((services, address)) => (services, Some(address.parse().map_err(|_| error("bad address"))?)),
            None => (rest, None),
        };
        if !is_valid_name(name) {
            return Err(error("a name has 1 to 32 letters, digits, - or _"));
        }
        let services: Vec<String> = services.split('+').map(str::to_ascii_uppercase).collect();
        if services.iter().any(|service| !is_valid_name(service)) {
            return Err(error("a service name has 1 to 32 letters, digits, - or _"));
        }
        Ok(WorkerSpec { name: name.to_string(), services, listen })
    }
}

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
    /// Seconds of inactivity after which a session is closed.
    pub idle_timeout: u64,
    /// Apply no-clobber to every upload (`STOR x` stores `x_copy1` when `x` exists); off by
    /// default, so that `STOR` replaces as RFC 959 says unless a session asks for no-clobber.
    pub no_clobber: bool,
    /// Close sessions still open when a shutdown's grace period is over (one extra file
    /// descriptor per session); on by default, the binary turns it off because it exits.
    pub close_on_stop: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            grace_period: DEFAULT_GRACE_PERIOD,
            passive_ports: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT_SECS,
            no_clobber: false,
            close_on_stop: true,
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
    use proptest::prelude::*;

    #[test]
    fn worker_specs_parse() {
        let spec: WorkerSpec = "SV7=add+MUL@127.0.0.1:2200".parse().expect("valid");
        assert_eq!(spec.name, "SV7");
        assert_eq!(spec.services, vec!["ADD", "MUL"]);
        assert_eq!(spec.listen, Some("127.0.0.1:2200".parse().expect("literal")));
        assert_eq!("W=INC".parse::<WorkerSpec>().expect("valid").listen, None);
        for bad in ["", "SV1", "SV1=", "SV1=ADD@nowhere", "S V=ADD", "SV1=A;B"] {
            assert!(bad.parse::<WorkerSpec>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn default_workers_sit_next_to_the_main_server() {
        let config = ClusterConfig::new("SV0", "ftp-folder");
        assert_eq!(config.workers.len(), 4);
        assert_eq!(config.worker_address(0).port(), 2122);
        assert_eq!(config.worker_address(3).port(), 2125);
        let ephemeral = config.listen("127.0.0.1:0".parse().expect("literal"));
        assert_eq!(ephemeral.worker_address(2).port(), 0);
    }

    proptest! {
        #[test]
        fn any_worker_spec_parses_or_is_refused_without_panic(spec in "\\PC{0,80}") {
            let _ = spec.parse::<WorkerSpec>();
        }

        #[test]
        fn worker_specs_round_trip(name in "[A-Za-z0-9_-]{1,32}", services in proptest::collection::vec("[A-Z0-9_-]{1,32}", 1..6), port in proptest::option::of(1u16..)) {
            let listen = port.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
            let spec = WorkerSpec { name, services, listen };
            prop_assert_eq!(spec.to_string().parse::<WorkerSpec>().expect("valid"), spec);
        }
    }
}
