//! Started servers: [`RunningCluster`] reports their addresses, prints the table, stops one
//! server or all of them in the right order (main server first).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::access::{AccessError, AccessPolicy, SharedPolicy};
use crate::bootstrap::reload::Reloader;
use crate::cluster::registry::{Registry, Role, ServerEntry};
use crate::cluster::router::Router;
use crate::config::AccessConfig;
use crate::server::listener::serve;
use crate::server::ServerContext;
use crate::telemetry::http::Endpoint;
use crate::telemetry::Telemetry;

/// One started server: its entry, the trigger that stops it and its task.
#[derive(Debug)]
pub(crate) struct RunningServer {
    entry: ServerEntry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub(crate) fn spawn(listener: TcpListener, context: ServerContext) -> Self {
        let entry = context.site.identity.clone();
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
    router: Router,
    policy: SharedPolicy,
    maintenance: JoinHandle<()>,
    servers: Vec<RunningServer>,
    telemetry: Arc<Telemetry>,
    endpoint: Option<Endpoint>,
    reloader: Option<Reloader>,
    /// Follows the shared registry (etcd), when there is one.
    sync: Option<JoinHandle<()>>,
}

impl RunningCluster {
    pub(crate) fn new(registry: Registry, router: Router, policy: SharedPolicy, servers: Vec<RunningServer>) -> Self {
        let maintenance = tokio::spawn(router.clone().maintain());
        RunningCluster {
            registry,
            router,
            policy,
            maintenance,
            servers,
            telemetry: Arc::default(),
            endpoint: None,
            reloader: None,
            sync: None,
        }
    }

    /// Stops `sync` (the task following the shared registry) with the cluster.
    pub(crate) fn following(mut self, sync: Option<JoinHandle<()>>) -> Self {
        self.sync = sync;
        self
    }

    pub(crate) fn observed(
        mut self,
        telemetry: Arc<Telemetry>,
        endpoint: Option<Endpoint>,
        reloader: Reloader,
    ) -> Self {
        self.telemetry = telemetry;
        self.endpoint = endpoint;
        self.reloader = Some(reloader);
        self
    }

    /// Puts a new access configuration (users, permissions, anonymous access, TLS, limits) in
    /// force for new sessions; open sessions keep theirs. On error the old one stays.
    pub async fn reload(&self, access: &AccessConfig) -> Result<(), AccessError> {
        match &self.reloader {
            Some(reloader) => reloader.reload(access).await,
            None => Ok(()),
        }
    }

    /// The metrics and the transfer log of the cluster's servers.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Where the HTTP endpoint (`/metrics`, `/health`, `/ready`) listens, if it was asked for.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::address)
    }

    /// The access policy in force (accounts, TLS, limits).
    pub fn access(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// The shared access policy, to replace on reload.
    pub fn policy(&self) -> &SharedPolicy {
        &self.policy
    }

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
        self.router.close();
        self.maintenance.abort();
        if let Some(sync) = &self.sync {
            sync.abort();
        }
    }

    /// The main server's router (its worker connections, for tests and embedders that look
    /// at them).
    pub fn router(&self) -> &Router {
        &self.router
    }
}
