//! Bootstrapping: [`Cluster`] checks a [`ClusterConfig`], binds every listener, fills the
//! registry and starts the main server and its workers in the right order;
//! [`RunningCluster`] ([`running`]) reports their addresses and shuts them down; [`worker`]
//! starts a standalone worker that joins a main server over the network.

pub mod reload;
pub mod running;
pub mod status;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use arc_swap::ArcSwap;

use crate::access::gate::Gate;
use crate::access::{AccessError, AccessPolicy, FolderSettings, SharedPolicy};
use crate::cluster::join::KnownMain;
use crate::cluster::registry::{Registry, RegistryError, Role, ServerEntry};
use crate::cluster::router::Router;
use crate::cluster::secret::ClusterSecret;
use crate::cluster::shared::SharedRegistry;
use crate::cluster::worker_client::{WorkerClient, DEFAULT_MAX_PER_WORKER};
use crate::config::{ClusterConfig, ServerOptions};
use crate::ftp_backend::downloads::Downloads;
use crate::protocol::RESERVED;
use crate::server::{ServerContext, ServerSettings};
use crate::services::{is_valid_name, Service, ServiceSet};
use crate::site_cmds::{ClusterView, SiteContext};
use crate::telemetry::http::{Endpoint, Status};
use crate::telemetry::xferlog::TransferLog;
use crate::telemetry::Telemetry;
use reload::Reloader;
pub use running::RunningCluster;
use running::RunningServer;
use status::ClusterStatus;

/// Why a cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The FTP folder cannot be created or opened.
    #[error("cannot use FTP folder {path:?}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A listener cannot bind its address.
    #[error("{name} cannot listen on {address}: {source}")]
    Bind {
        /// The server's name.
        name: String,
        /// The address.
        address: SocketAddr,
        /// What failed.
        source: io::Error,
    },
    /// The transfer log cannot be opened.
    #[error("cannot open the transfer log {path:?}: {source}")]
    TransferLog {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The metrics endpoint cannot listen on its address.
    #[error("the metrics endpoint cannot listen on {address}: {source}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// What failed.
        source: io::Error,
    },
    /// The configuration contradicts itself.
    #[error("invalid cluster configuration: {0}")]
    Invalid(String),
    /// Accounts, homes or TLS cannot be used.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The registry refused a server.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A cluster to start: its configuration and the catalogue of services its servers can offer.
#[derive(Clone, Debug)]
pub struct Cluster {
    config: ClusterConfig,
    catalog: ServiceSet,
    downloads: Arc<Downloads>,
}

impl Cluster {
    /// A cluster with the arithmetic services in its catalogue.
    pub fn new(config: ClusterConfig) -> Self {
        Cluster { config, catalog: ServiceSet::arithmetic(), downloads: Arc::default() }
    }

    /// Uses `downloads` for the download counters (by default they log to standard output).
    pub fn downloads(mut self, downloads: Arc<Downloads>) -> Self {
        self.downloads = downloads;
        self
    }

    /// Adds an embedder's service to the catalogue; offer it by naming it in a worker's
    /// services (or in the main server's `main_services`).
    pub fn service(mut self, service: impl Service) -> Self {
        self.catalog = self.catalog.with(service);
        self
    }

    fn check(&self) -> Result<(), ClusterError> {
        let invalid = |message: String| Err(ClusterError::Invalid(message));
        for name in self.catalog.names() {
            if !is_valid_name(&name) || RESERVED.contains(&name.as_str()) {
                return invalid(format!("{name:?} cannot be a service name"));
            }
        }
        let mut names = vec![&self.config.main_name];
        names.extend(self.config.workers.iter().map(|worker| &worker.name));
        for (position, name) in names.iter().enumerate() {
            if !is_valid_name(name) {
                return invalid(format!("{name:?} cannot be a server name"));
            }
            if names[..position].contains(name) {
                return invalid(format!("two servers are called {name}"));
            }
        }
        let offered = self.config.workers.iter().map(|worker| (&worker.name, &worker.services));
        for (server, services) in offered.chain([(&self.config.main_name, &self.config.main_services)]) {
            if let Some(unknown) = services.iter().find(|service| self.catalog.get(service).is_none()) {
                return invalid(format!("{server} offers {unknown}, which is not a known service"));
            }
        }
        Ok(())
    }

    /// Starts the workers and the main server; returns once all of them accept connections.
    pub async fn start(self) -> Result<RunningCluster, ClusterError> {
        self.check()?;
        let config = &self.config;
        // The cluster's servers log in to each other with the cluster secret; an in-process
        // cluster without one (registration off) makes one up for its own hop.
        let hop_secret = config.secret.clone().unwrap_or_else(|| ClusterSecret::generate().0);
        let (settings, reloader) =
            settings(&config.root, self.downloads.clone(), &config.options, Some(hop_secret.clone())).await?;
        let main_listener = bind(&config.main_name, config.listen).await?;
        let main_entry = entry(&config.main_name, &main_listener, Role::Main, &config.main_services)?;
        let registry = Registry::new();
        registry.register(main_entry.clone())?;
        let mut workers = Vec::new();
        for (position, spec) in config.workers.iter().enumerate() {
            let listener = bind(&spec.name, config.worker_address(position)).await?;
            let worker_entry = entry(&spec.name, &listener, Role::Worker, &spec.services)?;
            registry.register(worker_entry.clone())?;
            workers.push((worker_entry, listener));
        }

        let mut started = Vec::new();
        for (identity, listener) in workers {
            let known = KnownMain::default();
            known.set(main_entry.clone());
            let site = SiteContext::new(identity, self.catalog.clone(), ClusterView::Worker { main: known });
            started
                .push(RunningServer::spawn(listener, ServerContext::new(site, settings.clone()).map_err(site_table)?));
        }
        // Several main servers share their workers and download counts on etcd.
        let (shared, sync) = match config.options.registry.as_slice() {
            [] => (None, None),
            endpoints => {
                let (shared, sync) = share(endpoints, &registry, &self.downloads, main_entry.clone()).await?;
                (Some(shared), Some(sync))
            }
        };
        let workers = WorkerClient::new(hop_secret, DEFAULT_MAX_PER_WORKER);
        let router = Router::new(registry.clone(), workers, config.worker_timeout, settings.telemetry.clone());
        let view = ClusterView::Main {
            registry: registry.clone(),
            router: router.clone(),
            secret: config.secret.clone(),
            worker_ttl: config.worker_ttl,
            gate: settings.gate.clone(),
            policy: settings.policy.clone(),
            shared: shared.clone(),
        };
        let site = SiteContext::new(main_entry, self.catalog.clone(), view);
        let (policy, telemetry) = (settings.policy.clone(), settings.telemetry.clone());
        let settings = ServerSettings { proxy_protocol: config.options.proxy_protocol, ..settings };
        started.insert(0, RunningServer::spawn(main_listener, ServerContext::new(site, settings).map_err(site_table)?));
        let endpoint = match config.options.metrics_listen {
            Some(address) => {
                let routed = self.catalog.names().into_iter().filter(|name| !config.main_services.contains(name));
                let status = ClusterStatus { registry: registry.clone(), services: routed.collect(), shared };
                Some(metrics_endpoint(address, telemetry.clone(), Arc::new(status)).await?)
            }
            None => None,
        };
        Ok(RunningCluster::new(registry, router, policy, started)
            .observed(telemetry, endpoint, reloader)
            .following(sync))
    }
}

/// Connects the registry and the download counters to the shared registry at `endpoints`
/// (etcd) and starts following it.
#[cfg(feature = "etcd")]
async fn share(
    endpoints: &[String],
    registry: &Registry,
    downloads: &Downloads,
    own: ServerEntry,
) -> Result<(Arc<dyn SharedRegistry>, tokio::task::JoinHandle<()>), ClusterError> {
    let etcd = crate::cluster::etcd::Etcd::connect(endpoints)
        .await
        .map_err(|error| ClusterError::Invalid(error.to_string()))?;
    downloads.share(Arc::new(etcd.clone()));
    let sync = etcd.spawn_sync(registry.clone(), own);
    Ok((Arc::new(etcd), sync))
}

/// Without the `etcd` feature there is no shared registry to connect to.
#[cfg(not(feature = "etcd"))]
async fn share(
    _endpoints: &[String],
    _registry: &Registry,
    _downloads: &Downloads,
    _own: ServerEntry,
) -> Result<(Arc<dyn SharedRegistry>, tokio::task::JoinHandle<()>), ClusterError> {
    Err(ClusterError::Invalid(
        "this ftpcalc was built without etcd: build it with `--features etcd` (which needs protoc, Debian's \
         protobuf-compiler) to share a registry"
            .into(),
    ))
}

/// libunftp refused a SITE command name (the catalogue's names are checked before, so this
/// would be a bug).
pub(crate) fn site_table(error: libunftp::ServerError) -> ClusterError {
    ClusterError::Invalid(format!("cannot register the SITE commands: {error}"))
}

/// Builds the access policy and the settings every server started with `options` shares:
/// the folders (created if missing, stale temporaries removed), accounts, TLS, limits.
pub(crate) async fn settings(
    root: &Path,
    downloads: Arc<Downloads>,
    options: &ServerOptions,
    cluster_secret: Option<ClusterSecret>,
) -> Result<(ServerSettings, Reloader), ClusterError> {
    let folders = FolderSettings { root: root.to_path_buf(), downloads, no_clobber: options.no_clobber };
    let descriptors = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
    let policy = AccessPolicy::build(&options.access, &folders, cluster_secret.clone(), descriptors).await?;
    match policy.folders.root.remove_stale_uploads().await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed temporary files of interrupted uploads"),
        Err(error) => tracing::warn!(%error, "cannot look for temporary upload files"),
    }
    let transfer_log = match &options.transfer_log {
        Some(path) => {
            Some(TransferLog::open(path).map_err(|source| ClusterError::TransferLog { path: path.clone(), source })?)
        }
        None => None,
    };
    let max_transfers = policy.limits.max_transfers;
    let policy: SharedPolicy = Arc::new(ArcSwap::from_pointee(policy));
    let telemetry = Arc::new(Telemetry::new(transfer_log));
    let reloader = Reloader {
        policy: policy.clone(),
        folders,
        secret: cluster_secret,
        telemetry: telemetry.clone(),
        max_transfers: options.access.limits.max_transfers,
    };
    let settings = ServerSettings {
        policy,
        telemetry,
        gate: Arc::new(Gate::new(max_transfers)),
        passive_ports: options.passive_ports.clone(),
        passive_host: options.passive_host.clone(),
        grace_period: options.grace_period,
        close_on_stop: options.close_on_stop,
        proxy_protocol: false,
    };
    Ok((settings, reloader))
}

pub(crate) async fn metrics_endpoint(
    address: SocketAddr,
    telemetry: Arc<Telemetry>,
    status: Arc<dyn Status>,
) -> Result<Endpoint, ClusterError> {
    Endpoint::start(address, telemetry, status).await.map_err(|source| ClusterError::Metrics { address, source })
}

pub(crate) async fn bind(name: &str, address: SocketAddr) -> Result<TcpListener, ClusterError> {
    TcpListener::bind(address).await.map_err(|source| ClusterError::Bind { name: name.to_string(), address, source })
}

pub(crate) fn entry(
    name: &str,
    listener: &TcpListener,
    role: Role,
    services: &[String],
) -> Result<ServerEntry, ClusterError> {
    let address = listener.local_addr().map_err(|source| ClusterError::Bind {
        name: name.to_string(),
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let mut services: Vec<String> = services.iter().map(|service| service.to_ascii_uppercase()).collect();
    services.sort();
    services.dedup();
    Ok(ServerEntry { name: name.to_string(), address, role, services })
}
