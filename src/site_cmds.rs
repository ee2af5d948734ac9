//! The SITE commands (RFC 959 §4.1.3: "SITE ... services specific to \[the\] system"): the
//! cluster's own verbs and one verb per service.
//!
//! Each handler follows parse, act, reply: the arguments become a typed request through a pure
//! parser, the request is computed here or routed to a worker, and exactly one [`Reply`] goes
//! back. Errors become replies only in [`SiteError::to_reply`]. The verb families live in
//! submodules: [`routing`] (services), [`info`] (`HELP`, `INFO`, `LOOKUP`, `SERVERS`),
//! [`membership`] (`CHALLENGE`, `REGISTER`, `DEREGISTER`), [`files`] (`STATS`, `NOCLOBBER`,
//! `STORED`) and [`error`].

pub mod error;
pub mod files;
pub mod info;
pub mod membership;
pub mod routing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use libunftp::options::{Reply, ReplyCode, SiteCommandContext, SiteCommandHandler};

use crate::access::gate::Gate;
use crate::access::SharedPolicy;
use crate::accounts::User;
use crate::cluster::join::KnownMain;
use crate::cluster::registry::{Registry, ServerEntry};
use crate::cluster::router::Router;
use crate::cluster::secret::ClusterSecret;
use crate::cluster::shared::SharedRegistry;
use crate::ftp_backend::FtpBackend;
use crate::protocol::{
    computed_by, CHALLENGE, DEREGISTER, HELP, INFO, LOOKUP, NOCLOBBER, REGISTER, RESERVED, SERVERS, STATS, STORED,
};
use crate::services::{Service, ServiceSet};
pub use error::{one_line, SiteError};

/// How a server sees the rest of the cluster.
#[derive(Debug)]
pub enum ClusterView {
    /// The main server: owns the registry and routes services to workers.
    Main {
        /// The registry of servers.
        registry: Registry,
        /// Routes service requests to workers.
        router: Router,
        /// What workers must prove to register; `None` refuses every registration.
        secret: Option<ClusterSecret>,
        /// How long a registration lasts unless renewed.
        worker_ttl: Duration,
        /// Wrong proofs count as failed logins: the lockout and its rule.
        gate: Arc<Gate>,
        /// The access policy in force (for the lockout's rule).
        policy: SharedPolicy,
        /// The registry shared with other main servers, when there is one: registrations are
        /// written there (and refused while it cannot be reached).
        shared: Option<Arc<dyn SharedRegistry>>,
    },
    /// A worker: knows where the main server is, to point clients there.
    Worker {
        /// The main server, once known.
        main: KnownMain,
    },
}

/// What the SITE commands of one server know; shared by all its connections.
#[derive(Debug)]
pub struct SiteContext {
    /// This server's own entry: name, address, role, the services it computes.
    pub identity: ServerEntry,
    /// Every service of the cluster by name (used to parse requests before computing or routing).
    pub catalog: ServiceSet,
    /// Main server or worker, with what that role needs.
    pub cluster: ClusterView,
    /// How many service requests this server computed itself.
    pub computed: AtomicU64,
}

impl SiteContext {
    /// The context of a server.
    pub fn new(identity: ServerEntry, catalog: ServiceSet, cluster: ClusterView) -> Self {
        SiteContext { identity, catalog, cluster, computed: AtomicU64::new(0) }
    }

    /// The main server: this one, or the one this worker knows.
    pub(crate) fn main_server(&self) -> Option<Box<ServerEntry>> {
        match &self.cluster {
            ClusterView::Main { .. } => Some(Box::new(self.identity.clone())),
            ClusterView::Worker { main } => main.get().map(Box::new),
        }
    }
}

/// What a SITE verb does on this server.
#[derive(Clone)]
pub enum Verb {
    /// `SITE HELP`.
    Help,
    /// `SITE INFO`.
    Info,
    /// `SITE LOOKUP`.
    Lookup,
    /// `SITE SERVERS`.
    Servers,
    /// `SITE CHALLENGE`, `SITE REGISTER`, `SITE DEREGISTER` (main server only).
    Membership(&'static str),
    /// `SITE STATS`.
    Stats,
    /// `SITE NOCLOBBER`.
    NoClobber,
    /// `SITE STORED`.
    Stored,
    /// A service this server computes itself.
    Compute(Arc<dyn Service>),
    /// A service the main server routes to a worker.
    Route(String),
    /// A service of the cluster that this worker does not offer.
    NotOffered(String),
}

/// The SITE verbs this server answers right now, with what each does.
///
/// Built for every connection, so that services that join the registry later are routed too.
pub fn verbs(server: &SiteContext) -> Vec<(String, Verb)> {
    let mut verbs = vec![
        (HELP.to_string(), Verb::Help),
        (INFO.to_string(), Verb::Info),
        (LOOKUP.to_string(), Verb::Lookup),
        (SERVERS.to_string(), Verb::Servers),
        (CHALLENGE.to_string(), Verb::Membership(CHALLENGE)),
        (REGISTER.to_string(), Verb::Membership(REGISTER)),
        (DEREGISTER.to_string(), Verb::Membership(DEREGISTER)),
        (STATS.to_string(), Verb::Stats),
        (NOCLOBBER.to_string(), Verb::NoClobber),
        (STORED.to_string(), Verb::Stored),
    ];
    let mut names = server.catalog.names();
    if let ClusterView::Main { registry, .. } = &server.cluster {
        names.extend(registry.services());
    }
    names.sort();
    names.dedup();
    for name in names.into_iter().filter(|name| !RESERVED.contains(&name.as_str())) {
        let local = server.catalog.get(&name).filter(|_| server.identity.offers(&name));
        let verb = match (local, &server.cluster) {
            (Some(service), _) => Verb::Compute(service),
            (None, ClusterView::Main { .. }) => Verb::Route(name.clone()),
            (None, ClusterView::Worker { .. }) => Verb::NotOffered(name.clone()),
        };
        verbs.push((name, verb));
    }
    verbs
}

/// The handler of one SITE verb on one server.
pub struct Site {
    server: Arc<SiteContext>,
    verb: Verb,
}

impl Site {
    /// The handler for `verb` on `server`.
    pub fn new(server: Arc<SiteContext>, verb: Verb) -> Self {
        Site { server, verb }
    }

    /// The service this verb runs or refuses, if it is one.
    fn service(&self) -> Option<&str> {
        match &self.verb {
            Verb::Compute(service) => Some(service.name()),
            Verb::Route(service) | Verb::NotOffered(service) => Some(service),
            _ => None,
        }
    }

    /// Answers one request of `user`; `Ok` is always a positive reply.
    pub async fn answer(&self, user: Option<&User>, arguments: &str, storage: &FtpBackend) -> Result<Reply, SiteError> {
        let server = &self.server;
        if let (Some(service), Some(user)) = (self.service(), user) {
            if !user.services.allows(service) {
                return Err(SiteError::ServiceNotAllowed {
                    user: user.name.clone(),
                    service: service.to_ascii_uppercase(),
                });
            }
        }
        match &self.verb {
            Verb::Help => Ok(info::help(server)),
            Verb::Info => Ok(Reply::new_with_string(ReplyCode::CommandOkay, info::info(server))),
            Verb::Lookup => info::lookup(server, arguments),
            Verb::Servers => info::servers(server),
            Verb::Membership(verb) => membership::answer(server, verb, storage, arguments).await,
            Verb::Stats => files::stats(storage, arguments).await,
            Verb::NoClobber => files::no_clobber(storage, arguments),
            Verb::Stored => files::stored(storage),
            Verb::Compute(service) => {
                let words = service.parse(arguments)?;
                let answer = service.call(&words).await?;
                server.computed.fetch_add(1, Ordering::Relaxed);
                Ok(Reply::new_with_string(
                    ReplyCode::CommandOkay,
                    one_line(&computed_by(&answer, &server.identity.name)),
                ))
            }
            Verb::Route(service) => routing::route(server, service, arguments).await,
            Verb::NotOffered(service) => Err(SiteError::NotOffered {
                server: server.identity.name.clone(),
                service: service.clone(),
                main: server.main_server(),
            }),
        }
    }
}

#[async_trait]
impl SiteCommandHandler<FtpBackend, User> for Site {
    async fn handle(&self, context: &SiteCommandContext<FtpBackend, User>) -> Reply {
        let user = context.user.as_ref().as_ref();
        // Runs in libunftp's task, outside our session span: enter it for the log lines, at
        // each poll, by reference (`Instrument` would clone the span, and enter it again to drop
        // the future: ~1.3k instructions of a routed request's ~45k).
        let span = &context.storage.tag().span;
        let mut answer = std::pin::pin!(self.answer(user, &context.arguments, &context.storage));
        std::future::poll_fn(|cx| {
            let _entered = span.enter();
            std::future::Future::poll(answer.as_mut(), cx)
        })
        .await
        .unwrap_or_else(|error| error.to_reply())
    }
}

impl std::fmt::Debug for Site {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Site").field("server", &self.server.identity.name).finish()
    }
}

#[cfg(test)]
mod tests {
    //! The handlers without sockets: a context, a session's storage back-end, and `answer`.

    use super::*;
    use crate::cluster::registry::Role;
    use crate::cluster::worker_client::WorkerClient;
    use crate::ftp_backend::downloads::Downloads;
    use crate::ftp_backend::Folders;

    fn entry(name: &str, port: u16, role: Role, services: &[&str]) -> ServerEntry {
        let services = services.iter().map(|service| service.to_string()).collect();
        ServerEntry { name: name.into(), address: ([127, 0, 0, 1], port).into(), role, services }
    }

    fn storage(folder: &tempfile::TempDir) -> FtpBackend {
        let folders = Folders::open(folder.path(), &[], Arc::new(Downloads::new(|_| {})), false).expect("folder");
        FtpBackend::open(Arc::new(folders), ([127, 0, 0, 1], 40000).into())
    }

    fn policy(folder: &tempfile::TempDir) -> SharedPolicy {
        let folders = Folders::open(folder.path(), &[], Arc::new(Downloads::new(|_| {})), false).expect("folder");
        let policy = crate::access::AccessPolicy {
            accounts: crate::accounts::Accounts::open(),
            folders: Arc::new(folders),
            tls: None,
            limits: crate::config::Limits::default(),
            cluster_secret: None,
        };
        Arc::new(arc_swap::ArcSwap::from_pointee(policy))
    }

    fn worker() -> Arc<SiteContext> {
        let main = KnownMain::default();
        main.set(entry("SV0", 2121, Role::Main, &[]));
        let view = ClusterView::Worker { main };
        Arc::new(SiteContext::new(entry("SV1", 2122, Role::Worker, &["ADD"]), ServiceSet::arithmetic(), view))
    }

    fn main_server(registry: &Registry, folder: &tempfile::TempDir) -> Arc<SiteContext> {
        let secret = ClusterSecret::generate().0;
        let router = Router::new(
            registry.clone(),
            WorkerClient::new(secret, 1),
            Duration::from_secs(1),
            Arc::new(crate::telemetry::Telemetry::default()),
        );
        let view = ClusterView::Main {
            registry: registry.clone(),
            router,
            secret: None,
            worker_ttl: Duration::from_secs(1),
            gate: Arc::new(Gate::default()),
            policy: policy(folder),
            shared: None,
        };
        Arc::new(SiteContext::new(entry("SV0", 2121, Role::Main, &[]), ServiceSet::arithmetic(), view))
    }

    fn tester() -> User {
        User::open("tester")
    }

    fn verb(server: &Arc<SiteContext>, name: &str) -> Site {
        let (_, verb) = verbs(server).into_iter().find(|(verb, _)| verb == name).expect("a verb");
        Site::new(server.clone(), verb)
    }

    #[track_caller]
    fn reply_text(reply: Result<Reply, SiteError>) -> (u32, String) {
        match reply.unwrap_or_else(|error| error.to_reply()) {
            Reply::CodeAndMsg { code, msg } => (code as u32, msg),
            Reply::MultiLine { code, lines } => (code as u32, lines.join("\n")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_worker_computes_its_services_and_points_to_the_main_server_for_others() {
        let folder = tempfile::tempdir().expect("folder");
        let storage = storage(&folder);
        let server = worker();
        let answer = verb(&server, "ADD").answer(Some(&tester()), "2 3", &storage).await;
        assert_eq!(reply_text(answer), (200, "5 (computed by SV1)".into()));
        let (code, text) = reply_text(verb(&server, "MUL").answer(Some(&tester()), "2 3", &storage).await);
        assert_eq!(code, 504);
        assert!(text.contains("SV0 at 127.0.0.1:2121"), "{text}");
        assert_eq!(reply_text(verb(&server, "LOOKUP").answer(Some(&tester()), "ADD", &storage).await).0, 502);
        assert_eq!(reply_text(verb(&server, "ADD").answer(Some(&tester()), "2 x", &storage).await).0, 501);
        let (code, help) = reply_text(verb(&server, "HELP").answer(Some(&tester()), "", &storage).await);
        assert_eq!(code, 214);
        assert!(help.contains("ADD A B [C ...]: sum of integers") && help.contains("MUL: not offered here"), "{help}");
        let (_, info) = reply_text(verb(&server, "INFO").answer(Some(&tester()), "", &storage).await);
        assert!(
            info.starts_with("name=SV1 role=worker") && info.contains("computed=1 main=SV0@127.0.0.1:2121"),
            "{info}"
        );
    }

    #[tokio::test]
    async fn the_main_server_looks_up_and_lists_and_refuses_what_cannot_be_routed() {
        let folder = tempfile::tempdir().expect("folder");
        let storage = storage(&folder);
        let registry = Registry::new();
        registry.register(entry("SV0", 2121, Role::Main, &[])).expect("register");
        registry.register(entry("W1", 2200, Role::Worker, &["ADD"])).expect("register");
        let server = main_server(&registry, &folder);
        let lookup = verb(&server, "LOOKUP");
        assert_eq!(
            reply_text(lookup.answer(Some(&tester()), "add", &storage).await),
            (200, "ADD W1=127.0.0.1:2200".into())
        );
        assert_eq!(
            reply_text(lookup.answer(Some(&tester()), "MUL", &storage).await).0,
            451,
            "known service, no worker"
        );
        assert_eq!(reply_text(lookup.answer(Some(&tester()), "NOPE", &storage).await).0, 504);
        let (code, servers) = reply_text(verb(&server, "SERVERS").answer(Some(&tester()), "", &storage).await);
        assert_eq!(code, 200);
        assert!(servers.contains(" W1 127.0.0.1:2200 worker ADD") && servers.ends_with("2 servers"), "{servers}");
        assert_eq!(
            reply_text(verb(&server, "MUL").answer(Some(&tester()), "2 3", &storage).await).0,
            451,
            "no worker for MUL"
        );
        assert_eq!(
            reply_text(verb(&server, "MUL").answer(Some(&tester()), "2", &storage).await).0,
            501,
            "checked before routing"
        );
        let (code, text) =
            reply_text(verb(&server, "REGISTER").answer(Some(&tester()), "W2 127.0.0.1:1 ADD 00", &storage).await);
        assert_eq!((code, text.as_str()), (550, "registration is disabled on this server"));
    }

    #[tokio::test]
    async fn a_user_calls_only_the_services_granted() {
        let folder = tempfile::tempdir().expect("folder");
        let storage = storage(&folder);
        let server = worker();
        let mut limited = tester();
        limited.services = crate::accounts::ServiceGrant::parse(&["ADD".into()]).expect("valid");
        assert_eq!(reply_text(verb(&server, "ADD").answer(Some(&limited), "1 2", &storage).await).0, 200);
        let (code, text) = reply_text(verb(&server, "MUL").answer(Some(&limited), "1 2", &storage).await);
        assert_eq!((code, text.as_str()), (550, "tester may not use MUL"));
        assert_eq!(
            reply_text(verb(&server, "INFO").answer(Some(&limited), "", &storage).await).0,
            200,
            "not a service"
        );
    }

    #[tokio::test]
    async fn the_file_verbs_keep_session_state() {
        let folder = tempfile::tempdir().expect("folder");
        let storage = storage(&folder);
        let server = worker();
        assert_eq!(reply_text(verb(&server, "STORED").answer(Some(&tester()), "", &storage).await).0, 550);
        assert_eq!(
            reply_text(verb(&server, "NOCLOBBER").answer(Some(&tester()), "on", &storage).await),
            (200, "no-clobber uploads on".into())
        );
        assert!(storage.no_clobber());
        assert_eq!(reply_text(verb(&server, "NOCLOBBER").answer(Some(&tester()), "maybe", &storage).await).0, 501);
        let (code, text) = reply_text(verb(&server, "STATS").answer(Some(&tester()), "missing.txt", &storage).await);
        assert_eq!((code, text.as_str()), (550, "no such file: /missing.txt"));
        std::fs::write(folder.path().join("here.txt"), b"x").expect("write");
        assert_eq!(
            reply_text(verb(&server, "STATS").answer(Some(&tester()), "here.txt", &storage).await),
            (200, "/here.txt 0".into())
        );
    }
}
