//! Bootstrapping: [`Cluster`] checks a [`ClusterConfig`], binds every listener, fills the
//! registry and starts the main server and its workers; [`RunningCluster`] reports their
//! addresses and shuts them down in the right order.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{ClusterConfig, ServerOptions};
use crate::downloads::Downloads;
use crate::ftp_backend::SharedFolder;
use crate::registry::{Registry, RegistryError, Role, ServerEntry};
use crate::server::{serve, ClusterView, ServerContext, ServerSettings};
use crate::services::{is_valid_name, Service, ServiceSet};
use crate::site_cmds::RESERVED;
use crate::worker_client::WorkerClient;

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
    /// The configuration contradicts itself.
    #[error("invalid cluster configuration: {0}")]
    Invalid(String),
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
        let settings = settings(&config.root, self.downloads.clone(), &config.options)?;
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
            let view = ClusterView::Worker { main: Some(main_entry.clone()) };
            let context = ServerContext::new(identity, self.catalog.clone(), view, settings.clone());
            started.push(RunningServer::spawn(listener, context));
        }
        let view = ClusterView::Main {
            registry: registry.clone(),
            workers: WorkerClient::new(config.main_name.clone(), config.worker_timeout),
            secret: config.secret.clone(),
            worker_ttl: config.worker_ttl,
        };
        let context = ServerContext::new(main_entry, self.catalog.clone(), view, settings);
        started.insert(0, RunningServer::spawn(main_listener, context));
        Ok(RunningCluster { registry, servers: started })
    }
}

/// Opens (creating it if needed) the FTP folder at `root` and builds the settings every server
/// started with `options` shares.
pub(crate) fn settings(
    root: &PathBuf,
    downloads: Arc<Downloads>,
    options: &ServerOptions,
) -> Result<ServerSettings, ClusterError> {
    let folder = prepare_folder(root, downloads, options.no_clobber)?;
    Ok(ServerSettings {
        folder: Arc::new(folder),
        passive_ports: options.passive_ports.clone(),
        grace_period: options.grace_period,
        idle_timeout: options.idle_timeout,
        close_on_stop: options.close_on_stop,
    })
}

fn prepare_folder(root: &PathBuf, downloads: Arc<Downloads>, no_clobber: bool) -> Result<SharedFolder, ClusterError> {
    let folder_error = |source| ClusterError::Folder { path: root.clone(), source };
    std::fs::create_dir_all(root).map_err(folder_error)?;
    let root = root.canonicalize().map_err(folder_error)?;
    let folder = SharedFolder::open(&root, downloads, no_clobber).map_err(folder_error)?;
    match folder.remove_stale_uploads() {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed temporary files of interrupted uploads"),
        Err(error) => tracing::warn!(%error, "cannot look for temporary upload files"),
    }
    Ok(folder)
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

/// One started server: its entry, the trigger that stops it and its task.
#[derive(Debug)]
pub(crate) struct RunningServer {
    entry: ServerEntry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub(crate) fn spawn(listener: TcpListener, context: ServerContext) -> Self {
        let entry = context.identity.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::new(context), async move {
            let _ = stopped.await;
        }));
        RunningServer { entry, stop: Some(stop), task: Some(task) }
    }

    fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub(crate) async fn stop(&mut self) {
        self.signal();
        self.wait().await;
    }

    async fn wait(&mut self) {
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::error!(server = %self.entry.name, %error, "server task failed");
            }
        }
    }
}

/// A started cluster. Dropping it leaves the servers running until the runtime ends; call
/// [`RunningCluster::shutdown`] to stop them gracefully.
#[derive(Debug)]
pub struct RunningCluster {
    registry: Registry,
    servers: Vec<RunningServer>,
}

impl RunningCluster {
    /// Every started server (main server first) with its bound address.
    pub fn servers(&self) -> Vec<ServerEntry> {
        self.servers.iter().map(|server| server.entry.clone()).collect()
    }

    /// The main server's address.
    pub fn main_address(&self) -> SocketAddr {
        self.servers[0].entry.address
    }

    /// The address of the server called `name`.
    pub fn address_of(&self, name: &str) -> Option<SocketAddr> {
        self.servers.iter().find(|server| server.entry.name == name).map(|server| server.entry.address)
    }

    /// The main server's registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Stops one server as if it had died: its listener closes and its connections end after
    /// the grace period, but it stays in the registry. True if it was running.
    pub async fn stop_server(&mut self, name: &str) -> bool {
        match self.servers.iter_mut().find(|server| server.entry.name == name && server.stop.is_some()) {
            Some(server) => {
                server.stop().await;
                true
            }
            None => false,
        }
    }

    /// A table of the servers: name, address, role, services.
    pub fn table(&self) -> String {
        let mut table = format!("{:<8} {:<22} {:<7} {}\n", "NAME", "ADDRESS", "ROLE", "SERVICES");
        for server in &self.servers {
            let entry = &server.entry;
            let services = match (entry.role, entry.services.is_empty()) {
                (Role::Main, true) => "(routes to workers; answers LOOKUP)".to_string(),
                (_, true) => "-".to_string(),
                _ => entry.services.join(","),
            };
            table.push_str(&format!(
                "{:<8} {:<22} {:<7} {}\n",
                entry.name,
                entry.address.to_string(),
                entry.role.to_string(),
                services
            ));
        }
        table
    }

    /// Stops the main server first (so no new request is routed), then the workers, each with
    /// the configured grace period for its open connections.
    pub async fn shutdown(mut self) {
        if let Some((main, workers)) = self.servers.split_first_mut() {
            main.stop().await;
            workers.iter_mut().for_each(RunningServer::signal);
            for worker in workers {
                worker.wait().await;
            }
        }
    }
}
