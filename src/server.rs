//! One FTP server of the cluster: [`ServerContext`] (what it knows), [`build_server`] (the
//! libunftp server for one connection) and, in [`listener`], its accept loop with graceful
//! shutdown.
//!
//! We accept connections ourselves and build one libunftp `Server` per connection (a few
//! microseconds): that lets the listener bind port 0 and report its address, hands each session
//! its client's address, and lets every connection see the registry as it is when it arrives.
//! The price is that libunftp's own shutdown and failed-login policy are per connection, so
//! [`listener::serve`] implements graceful shutdown itself.

pub mod auth;
pub mod listener;
pub mod proxy_header;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libunftp::options::{ActivePassiveMode, FtpsRequired, SiteMd5};
use libunftp::{Server, ServerBuilder};
use unftp_core::auth::UserDetailProvider;

use crate::access::gate::Gate;
use crate::access::{AccessPolicy, SharedPolicy};
use crate::accounts::User;
use crate::ftp_backend::FtpBackend;
use crate::site_cmds::{verbs, Site, SiteContext};
use crate::telemetry::SessionTag;
use auth::SessionAuth;

/// Settings every server of a cluster shares.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Who may connect and log in, and what they may do (swapped whole on reload).
    pub policy: SharedPolicy,
    /// Connection counts, lockout, the bound on password checks: one per process.
    pub gate: Arc<Gate>,
    /// Ports for passive data connections; `None` leaves libunftp's default (49152-65535).
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// The address PASV announces, if not the control connection's.
    pub passive_host: Option<String>,
    /// How long a shutdown waits for open connections before closing them.
    pub grace_period: Duration,
    /// Metrics and the transfer log, shared by every server of the process.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Close sessions still open when the grace period of a shutdown is over. It costs one
    /// file descriptor per session (a second handle on its socket); a process that exits after
    /// the shutdown anyway (the `ftpcalc` binary) can do without.
    pub close_on_stop: bool,
    /// Control connections start with a PROXY protocol header (the main server behind
    /// HAProxy); never for workers, which the main server reaches directly.
    pub proxy_protocol: bool,
}

/// Everything one server knows; shared by all its connections.
#[derive(Debug)]
pub struct ServerContext {
    /// What its SITE commands know: identity, services, role in the cluster.
    pub site: Arc<SiteContext>,
    /// Settings shared with the other servers.
    pub settings: ServerSettings,
    greeting: &'static str,
    site_table: SiteTable,
}

impl ServerContext {
    /// The context of a server; its greeting names it. Fails if libunftp refuses one of its
    /// SITE command names.
    pub fn new(site: SiteContext, settings: ServerSettings) -> Result<Self, libunftp::ServerError> {
        // libunftp wants a `&'static str` greeting; leaking one short string per server (not
        // per connection) is bounded.
        let greeting: &'static str =
            Box::leak(format!("ftpcalc {} ({}) ready", site.identity.name, site.identity.role).into_boxed_str());
        let site = Arc::new(site);
        let site_table = SiteTable::new(&site, &settings)?;
        Ok(ServerContext { site, settings, greeting, site_table })
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.site.identity.name
    }

    /// True for the address of the main server this worker knows: it is exempt from the
    /// per-address connection limit, since it keeps a pool of connections to each worker.
    pub fn trusts(&self, address: std::net::IpAddr) -> bool {
        match &self.site.cluster {
            crate::site_cmds::ClusterView::Worker { main } => {
                main.get().is_some_and(|main| main.address.ip() == address)
            }
            crate::site_cmds::ClusterView::Main { .. } => false,
        }
    }
}

/// Builds the libunftp server for one connection from `peer` under `policy`, with `auth`
/// answering its logins; [`listener::serve`] calls this for every accepted connection.
pub fn build_server(
    context: &ServerContext,
    policy: &AccessPolicy,
    peer: SocketAddr,
    auth: Arc<SessionAuth>,
    tag: SessionTag,
) -> Result<Server<FtpBackend, User>, libunftp::ServerError> {
    let folders = policy.folders.clone();
    let telemetry = context.settings.telemetry.clone();
    let storage = Box::new(move || {
        // The folders were opened once at start-up; sessions share their handles.
        FtpBackend::open(folders.clone(), peer).observed(telemetry.clone(), tag.clone())
    });
    let provider: Arc<dyn UserDetailProvider<User = User> + Send + Sync> = auth.clone();
    let mut builder = ServerBuilder::<FtpBackend, User>::with_user_detail_provider::<User>(storage, provider)
        .authenticator(auth)
        .greeting(context.greeting)
        .active_passive_mode(ActivePassiveMode::ActiveAndPassive)
        // The built-in SITE MD5 reads whole files of any size with a 10 MiB buffer per request:
        // off, as everything a client can make the server do in bulk should be.
        .sitemd5(SiteMd5::None)
        .idle_session_timeout(policy.limits.idle_timeout.as_secs())
        .data_connection_timeout(policy.limits.data_timeout)
        .data_connection_limit(context.settings.gate.transfers.clone())
        .logger(crate::telemetry::libunftp_log::logger());
    if let Some(tls) = &policy.tls {
        // One configuration built at start-up for every connection (the `ftps(cert, key)`
        // builder would read and parse the PEM files again for each one).
        builder = builder.ftps_manual::<PathBuf>(tls.identity.config.clone());
        if policy.tls_required_for(peer.ip()) {
            builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::None);
        }
    }
    if let Some(host) = &context.settings.passive_host {
        builder = builder.passive_host(host.as_str());
    }
    if let Some(ports) = &context.settings.passive_ports {
        builder = builder.passive_ports(ports.clone());
    }
    builder.site_commands_from(&context.site_table.0).build()
}

/// A libunftp server that never serves: it holds the server's SITE command table, which every
/// connection's server shares (libunftp patch 16) instead of registering each verb again
/// (a map, a key and a handler per verb, kept for the whole session).
struct SiteTable(Server<FtpBackend, User>);

impl SiteTable {
    fn new(site: &Arc<SiteContext>, settings: &ServerSettings) -> Result<Self, libunftp::ServerError> {
        let nobody = SocketAddr::from(([0, 0, 0, 0], 0));
        let policy = settings.policy.load_full();
        let (auth, _) = SessionAuth::new(
            policy.clone(),
            settings.gate.clone(),
            nobody,
            String::new(),
            settings.telemetry.clone(),
            SessionTag::none(),
        );
        let folders = policy.folders.clone();
        let storage = Box::new(move || FtpBackend::open(folders.clone(), nobody));
        let provider: Arc<dyn UserDetailProvider<User = User> + Send + Sync> = auth.clone();
        let mut builder =
            ServerBuilder::<FtpBackend, User>::with_user_detail_provider::<User>(storage, provider).authenticator(auth);
        for (name, verb) in verbs(site) {
            builder = builder.site_command(name, Site::new(site.clone(), verb));
        }
        builder.build().map(SiteTable)
    }
}

impl std::fmt::Debug for SiteTable {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SiteTable")
    }
}
