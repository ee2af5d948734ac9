//! One FTP server of the cluster: [`ServerContext`] (what it knows), [`build_server`] (the
//! libunftp server for one connection) and [`serve`] (its listener's accept loop with graceful
//! shutdown).
//!
//! We accept connections ourselves and build one libunftp `Server` per connection (a few
//! microseconds): that lets the listener bind port 0 and report its address, hands each session
//! its client's address, and lets every connection see the registry as it is when it arrives.
//! The price is that libunftp's own shutdown and failed-login policy are per connection, so
//! [`serve`] implements graceful shutdown itself.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use libunftp::options::ActivePassiveMode;
use libunftp::{Server, ServerBuilder};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use unftp_core::auth::DefaultUser;

use crate::ftp_backend::{FtpBackend, SharedFolder};
use crate::registry::{Registry, ServerEntry};
use crate::secret::ClusterSecret;
use crate::services::ServiceSet;
use crate::site_cmds::{verbs, Site};
use crate::worker_client::WorkerClient;

/// How a server sees the rest of the cluster.
#[derive(Debug)]
pub enum ClusterView {
    /// The main server: owns the registry and routes services to workers.
    Main {
        /// The registry of servers.
        registry: Registry,
        /// Its FTP client to the workers.
        workers: WorkerClient,
        /// What workers must prove to register; `None` refuses every registration.
        secret: Option<ClusterSecret>,
        /// How long a registration lasts unless renewed.
        worker_ttl: Duration,
    },
    /// A worker: knows where the main server is, to point clients there.
    Worker {
        /// The main server, if any.
        main: Option<ServerEntry>,
    },
}

/// Settings every server of a cluster shares.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The FTP folder all servers serve, opened at start-up.
    pub folder: Arc<SharedFolder>,
    /// Ports for passive data connections; `None` leaves libunftp's default (49152-65535).
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// How long a shutdown waits for open connections before closing them.
    pub grace_period: Duration,
    /// Seconds of inactivity after which a session is closed.
    pub idle_timeout: u64,
    /// Close sessions still open when the grace period of a shutdown is over. It costs one
    /// file descriptor per session (a second handle on its socket); a process that exits after
    /// the shutdown anyway (the `ftpcalc` binary) can do without.
    pub close_on_stop: bool,
}

/// Everything one server knows; shared by all its connections.
#[derive(Debug)]
pub struct ServerContext {
    /// This server's own entry: name, address, role, the services it computes.
    pub identity: ServerEntry,
    /// Every service of the cluster by name (used to parse requests before computing or routing).
    pub catalog: ServiceSet,
    /// Main server or worker, with what that role needs.
    pub cluster: ClusterView,
    /// Settings shared with the other servers.
    pub settings: ServerSettings,
    /// How many service requests this server computed itself.
    pub computed: AtomicU64,
    greeting: &'static str,
}

impl ServerContext {
    /// The context of a server; its greeting names it.
    pub fn new(identity: ServerEntry, catalog: ServiceSet, cluster: ClusterView, settings: ServerSettings) -> Self {
        // libunftp wants a `&'static str` greeting; leaking one short string per server (not
        // per connection) is bounded.
        let greeting: &'static str =
            Box::leak(format!("ftpcalc {} ({}) ready", identity.name, identity.role).into_boxed_str());
        ServerContext { identity, catalog, cluster, settings, computed: AtomicU64::new(0), greeting }
    }
}

/// Builds the libunftp server for one connection; `serve` and the tests both call this.
pub fn build_server(
    context: &Arc<ServerContext>,
    peer: SocketAddr,
) -> Result<Server<FtpBackend, DefaultUser>, libunftp::ServerError> {
    let folder = context.settings.folder.clone();
    let storage = Box::new(move || {
        // The folder was opened once at start-up; sessions share its handles.
        FtpBackend::open(folder.clone(), peer)
    });
    let mut builder = ServerBuilder::new(storage)
        .greeting(context.greeting)
        .active_passive_mode(ActivePassiveMode::ActiveAndPassive)
        .idle_session_timeout(context.settings.idle_timeout);
    if let Some(ports) = &context.settings.passive_ports {
        builder = builder.passive_ports(ports.clone());
    }
    for (name, verb) in verbs(context) {
        builder = builder.site_command(name, Site::new(context.clone(), verb));
    }
    builder.build()
}

/// Serves `listener` until `shutdown` completes, then stops accepting, gives open connections
/// the grace period to finish, and closes the ones still open.
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>, shutdown: impl Future<Output = ()>) {
    let name = context.identity.name.clone();
    let (close_sender, close_receiver) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(run_connection(context.clone(), stream, peer, close_receiver.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(server = %name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(server = %name, open = connections.len(), "shutting down");
    let drained =
        tokio::time::timeout(context.settings.grace_period, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::info!(server = %name, open = connections.len(), "grace period over, closing connections");
        let _ = close_sender.send(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while connections.join_next().await.is_some() {} })
                .await;
    }
    tracing::info!(server = %name, "stopped");
}

/// Runs one control connection until it ends or the server closes it.
async fn run_connection(
    context: Arc<ServerContext>,
    stream: TcpStream,
    peer: SocketAddr,
    mut close: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // libunftp runs the session in a task of its own, which dropping our future would not stop;
    // a second handle on the socket lets us shut the socket down under it.
    let (stream, handle) = if context.settings.close_on_stop {
        match split_handle(stream) {
            Ok((stream, handle)) => (stream, Some(handle)),
            Err(error) => return tracing::warn!(%peer, %error, "cannot set up connection"),
        }
    } else {
        (stream, None)
    };
    let server = match build_server(&context, peer) {
        Ok(server) => server,
        Err(error) => return tracing::error!(%peer, %error, "cannot build the FTP server"),
    };
    tracing::debug!(server = %context.identity.name, %peer, "connection opened");
    tokio::select! {
        _ = server.service(stream) => {}
        _ = close.wait_for(|closing| *closing) => {
            if let Some(handle) = handle {
                let _ = handle.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let handle = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, handle))
}
