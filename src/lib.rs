//! ftpcalc: a standards-compliant FTP server, built on libunftp and unftp-sbe-fs, whose SITE
//! commands run services (`ADD`, `SUB`, `MUL`, `INC`, or your own) distributed over a cluster:
//! a main server keeps a registry of worker servers, answers `SITE LOOKUP`, and routes each
//! service request to a worker over FTP.
//!
//! # Layout
//!
//! - [`config`]: [`ClusterConfig`] and [`WorkerSpec`], the defaults of the command line.
//! - [`cluster`]: bootstrapping; [`Cluster::start`] binds, registers and starts every server.
//! - [`server`]: one FTP server: its context, the per-connection libunftp server, the accept
//!   loop with graceful shutdown.
//! - [`site_cmds`]: the SITE command handlers; [`site_error`]: their errors and the one mapping
//!   to FTP reply codes; [`site_files`]: the file-service SITE commands (STATS, NOCLOBBER, STORED).
//! - [`services`]: the [`Service`] trait and the arithmetic services (pure, no I/O).
//! - [`registry`]: which server offers which service (no I/O).
//! - [`worker_client`]: the only code that talks FTP from the main server to workers.
//! - [`ftp_backend`]: the storage back-end around `unftp_sbe_fs`; [`upload`]: atomic and
//!   no-clobber uploads; [`downloads`]: download counters and their log.
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

pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod downloads;
pub mod file_io;
pub mod ftp_backend;
pub mod join;
pub mod registry;
pub mod remote_worker;
pub mod secret;
pub mod server;
pub mod services;
pub mod site_cluster;
pub mod site_cmds;
pub mod site_error;
pub mod site_files;
pub mod upload;
pub mod worker_client;

pub use cluster::{Cluster, ClusterError, RunningCluster};
pub use config::{ClusterConfig, ServerOptions, WorkerSpec, DEFAULT_LISTEN, DEFAULT_MAIN_NAME};
pub use downloads::Downloads;
pub use registry::{Registry, Role, ServerEntry};
pub use services::{Service, ServiceError, ServiceSet};
