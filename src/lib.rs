//! ftpcalc: a standards-compliant FTP server, built on libunftp and unftp-sbe-fs, whose SITE
//! commands run services (`ADD`, `SUB`, `MUL`, `INC`, or your own) distributed over a cluster:
//! a main server keeps a registry of worker servers, answers `SITE LOOKUP`, and routes each
//! service request to a worker over FTP.
//!
//! # Layout
//!
//! - [`protocol`]: what both ends of our FTP hops share: SITE verb names, reply codes, request
//!   lines, the one reply parser.
//! - [`services`]: the [`Service`] trait and, in [`services::arithmetic`], the shipped
//!   services (pure, no I/O).
//! - [`config`]: [`ClusterConfig`], [`ServerOptions`] and [`WorkerSpec`], the defaults of the
//!   command line.
//! - [`cluster`]: the parts below the FTP servers: the [`Registry`] (no I/O), the cluster
//!   secret, our lean FTP control connection, the main server's worker client and router
//!   (the one retry policy), a worker's join.
//! - [`ftp_backend`]: the storage back-end around `unftp_sbe_fs`: atomic and no-clobber
//!   uploads, sending in large chunks, download counters.
//! - [`site_cmds`]: the SITE command handlers (parse, act, reply) and the one mapping of their
//!   errors to FTP reply codes.
//! - [`server`]: one FTP server: the per-connection libunftp server and the accept loop with
//!   graceful shutdown.
//! - [`bootstrap`]: [`Cluster::start`] binds, registers and starts every server of a cluster in
//!   order; [`Worker::start`] starts a standalone worker that joins one over the network.
//! - [`telemetry`]: Prometheus metrics, the xferlog transfer log, the HTTP endpoint with
//!   `/metrics`, `/health` and `/ready`, and the session tag every log line carries.
//! - `client` and `bench` (with the default `cli` feature): the `ftpcalc client` and
//!   `ftpcalc bench` commands, as library code behind the thin binary.
//!
//! # Embedding
//!
//! Start a cluster with a service of your own next to the arithmetic ones:
//!
//! ```no_run
//! use async_trait::async_trait;
//! use ftpcalc::{Cluster, ClusterConfig, Service, ServiceError, WorkerSpec};
//!
//! /// `SITE SHOUT words...` answers the words in upper case.
//! struct Shout;
//!
//! #[async_trait]
//! impl Service for Shout {
//!     fn name(&self) -> &str { "SHOUT" }
//!     fn usage(&self) -> &str { "SHOUT WORD [WORD ...]: the words in upper case" }
//!     fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
//!         ftpcalc::services::plain_words(self, arguments)
//!     }
//!     async fn call(&self, words: &[String]) -> Result<String, ServiceError> {
//!         Ok(words.join(" ").to_uppercase())
//!     }
//! }
//!
//! # async fn run() -> Result<(), ftpcalc::ClusterError> {
//! let mut config = ClusterConfig::new("SV0", "ftp-folder");
//! config.workers.push(WorkerSpec::new("SV5", &["SHOUT"]));
//! let cluster = Cluster::new(config).service(Shout).start().await?;
//! print!("{}", cluster.table());
//! tokio::signal::ctrl_c().await.ok();
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod access;
pub mod accounts;
#[cfg(feature = "cli")]
pub mod bench;
pub mod bootstrap;
#[cfg(feature = "cli")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod ftp_backend;
pub mod protocol;
pub mod server;
pub mod services;
pub mod site_cmds;
pub mod telemetry;

pub use bootstrap::worker::{RunningWorker, Worker, WorkerConfig};
pub use bootstrap::{Cluster, ClusterError, RunningCluster};
pub use cluster::registry::{Registry, Role, ServerEntry};
pub use cluster::secret::ClusterSecret;
pub use config::{
    AccessConfig, ClusterConfig, Limits, ServerOptions, TlsConfig, TlsSource, WorkerSpec, DEFAULT_LISTEN,
    DEFAULT_MAIN_NAME,
};
pub use ftp_backend::downloads::Downloads;
pub use services::{Service, ServiceError, ServiceSet};
