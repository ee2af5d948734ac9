//! A worker in a process of its own (`ftpcalc worker`): it serves the FTP folder, computes its
//! services, joins a main server over the network and keeps its registration alive; on a
//! clean shutdown it deregisters at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access::AccessError;
use crate::access::{AccessPolicy, SharedPolicy};
use crate::bootstrap::reload::Reloader;
use crate::bootstrap::running::RunningServer;
use crate::bootstrap::status::WorkerStatus;
use crate::bootstrap::{bind, entry, metrics_endpoint, settings, site_table, ClusterError};
use crate::cluster::join::{Join, JoinError, KnownMain};
use crate::cluster::registry::{Role, ServerEntry};
use crate::cluster::secret::ClusterSecret;
use crate::config::AccessConfig;
use crate::config::{ServerOptions, DEFAULT_HEARTBEAT};
use crate::ftp_backend::downloads::Downloads;
use crate::server::ServerContext;
use crate::services::{Service, ServiceSet};
use crate::site_cmds::{ClusterView, SiteContext};
use crate::telemetry::http::Endpoint;
use crate::telemetry::Telemetry;
use std::sync::atomic::AtomicBool;

/// What a standalone worker needs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The worker's name.
    pub name: String,
    /// The FTP folder it serves (created if missing).
    pub root: PathBuf,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The address it registers, if other than the bound one (NAT, several interfaces, or a
    /// listener on 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// The main server's address.
    pub join: SocketAddr,
    /// The services it computes.
    pub services: Vec<String>,
    /// The cluster secret.
    pub secret: ClusterSecret,
    /// How often it renews its registration.
    pub heartbeat: Duration,
    /// Bound on each exchange with the main server.
    pub timeout: Duration,
    /// Grace period, passive ports, idle timeout, no-clobber, closing on stop.
    pub options: ServerOptions,
}

impl WorkerConfig {
    /// A worker `name` serving `root`, offering `services`, joining `join` with `secret`.
    pub fn new(
        name: &str,
        root: impl Into<PathBuf>,
        join: SocketAddr,
        services: &[&str],
        secret: ClusterSecret,
    ) -> Self {
        let root = root.into();
        WorkerConfig {
            name: name.to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            join,
            services: services.iter().map(|service| service.to_ascii_uppercase()).collect(),
            secret,
            heartbeat: DEFAULT_HEARTBEAT,
            timeout: Duration::from_secs(5),
            options: ServerOptions::default(),
            root,
        }
    }
}

/// A worker to start: its configuration and the services it can compute.
#[derive(Clone, Debug)]
pub struct Worker {
    config: WorkerConfig,
    catalog: ServiceSet,
}

impl Worker {
    /// A worker with the arithmetic services in its catalogue.
    pub fn new(config: WorkerConfig) -> Self {
        Worker { config, catalog: ServiceSet::arithmetic() }
    }

    /// Adds an embedder's service to the catalogue.
    pub fn service(mut self, service: impl Service) -> Self {
        self.catalog = self.catalog.with(service);
        self
    }

    /// Binds, starts serving, and registers with the main server. If the main server cannot be
    /// reached yet, the heartbeat keeps trying; if it refuses (wrong secret, bad name), the
    /// worker does not start.
    pub async fn start(self) -> Result<RunningWorker, ClusterError> {
        let config = &self.config;
        if let Some(unknown) = config.services.iter().find(|service| self.catalog.get(service).is_none()) {
            return Err(ClusterError::Invalid(format!(
                "{} offers {unknown}, which is not a known service",
                config.name
            )));
        }
        if !crate::services::is_valid_name(&config.name) {
            return Err(ClusterError::Invalid(format!("{:?} cannot be a server name", config.name)));
        }
        if config.options.proxy_protocol {
            return Err(ClusterError::Invalid(
                "the PROXY protocol is for main servers: the main server reaches its workers directly".into(),
            ));
        }
        let (settings, reloader) =
            settings(&config.root, Arc::new(Downloads::default()), &config.options, Some(config.secret.clone()))
                .await?;
        let listener = bind(&config.name, config.listen).await?;
        let mut identity = entry(&config.name, &listener, Role::Worker, &config.services)?;
        if let Some(advertise) = config.advertise {
            identity.address = advertise;
        }
        let known = KnownMain::default();
        let join = Join {
            main: config.join,
            worker: identity.clone(),
            secret: config.secret.clone(),
            timeout: config.timeout,
            known: known.clone(),
        };
        let main = match join.register().await {
            Ok(main) => Some(main),
            // 4xx: the main server cannot take it now (its shared registry is away): try again.
            Err(error @ JoinError::Refused { code, .. }) if !(400..500).contains(&code) => {
                return Err(ClusterError::Invalid(format!("cannot join the cluster: {error}")));
            }
            Err(error) => {
                tracing::warn!(%error, "not registered yet; the heartbeat will retry");
                None
            }
        };
        // Until the main server answers, its address is known but not its name; the heartbeat
        // fills in the rest at the first registration that succeeds.
        if main.is_none() {
            known.set(ServerEntry {
                name: "main".into(),
                address: config.join,
                role: Role::Main,
                services: Vec::new(),
            });
        }
        let site = SiteContext::new(identity.clone(), self.catalog.clone(), ClusterView::Worker { main: known });
        let (policy, telemetry) = (settings.policy.clone(), settings.telemetry.clone());
        let server = RunningServer::spawn(listener, ServerContext::new(site, settings).map_err(site_table)?);
        let (stop_heartbeat, stopped) = watch::channel(false);
        let beating = join.clone();
        let interval = config.heartbeat;
        let registered = Arc::new(AtomicBool::new(main.is_some()));
        let flag = registered.clone();
        let heartbeat = tokio::spawn(async move { beating.heartbeat(interval, flag, stopped).await });
        let endpoint = match config.options.metrics_listen {
            Some(address) => {
                Some(metrics_endpoint(address, telemetry.clone(), Arc::new(WorkerStatus { registered })).await?)
            }
            None => None,
        };
        Ok(RunningWorker {
            identity,
            main,
            join,
            server,
            policy,
            stop_heartbeat,
            heartbeat,
            telemetry,
            endpoint,
            reloader,
        })
    }
}

/// A started standalone worker.
#[derive(Debug)]
pub struct RunningWorker {
    identity: ServerEntry,
    main: Option<ServerEntry>,
    join: Join,
    server: RunningServer,
    policy: SharedPolicy,
    stop_heartbeat: watch::Sender<bool>,
    heartbeat: JoinHandle<()>,
    telemetry: Arc<Telemetry>,
    endpoint: Option<Endpoint>,
    reloader: Reloader,
}

impl RunningWorker {
    /// The worker's entry as registered (its reachable address).
    pub fn identity(&self) -> &ServerEntry {
        &self.identity
    }

    /// The access policy in force (accounts, TLS, limits).
    pub fn access(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// The shared access policy, to replace on reload.
    pub fn policy(&self) -> &SharedPolicy {
        &self.policy
    }

    /// Puts a new access configuration in force for new sessions (see
    /// [`RunningCluster::reload`](crate::RunningCluster::reload)).
    pub async fn reload(&self, access: &AccessConfig) -> Result<(), AccessError> {
        self.reloader.reload(access).await
    }

    /// The worker's metrics and transfer log.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Where the HTTP endpoint listens, if it was asked for.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::address)
    }

    /// The main server, if the first registration succeeded.
    pub fn main(&self) -> Option<&ServerEntry> {
        self.main.as_ref()
    }

    /// Stops the heartbeat, deregisters, then stops serving (with the grace period).
    pub async fn shutdown(mut self) {
        let _ = self.stop_heartbeat.send(true);
        let _ = (&mut self.heartbeat).await;
        if let Err(error) = self.join.deregister().await {
            tracing::warn!(%error, "could not deregister");
        }
        self.server.stop().await;
    }
}
