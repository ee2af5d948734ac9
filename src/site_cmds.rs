//! The SITE commands (RFC 959 §4.1.3: "SITE ... services specific to [the] system"): the
//! cluster's own verbs (`HELP`, `INFO`, `LOOKUP`, `SERVERS`) and one verb per service.
//!
//! Each handler follows parse, act, reply: the arguments become a typed request through a pure
//! parser, the request is computed here or routed to a worker, and exactly one [`Reply`] goes
//! back. Errors become replies only in [`SiteError::to_reply`].

use std::sync::Arc;

use async_trait::async_trait;
use libunftp::options::{Reply, ReplyCode, SiteCommandContext, SiteCommandHandler};
use unftp_core::auth::DefaultUser;

use crate::config::FAILED_WORKER_PAUSE;
use crate::ftp_backend::FtpBackend;
use crate::registry::{Role, ServerEntry};
use crate::server::{ClusterView, ServerContext};
use crate::services::{is_valid_name, plain_words, Service};
use crate::site_cluster::{self, Membership, CHALLENGE, DEREGISTER, REGISTER};
use crate::site_error::{one_line, SiteError};
use crate::site_files::{self, NOCLOBBER, STATS, STORED};
use crate::worker_client::{WorkerClient, WorkerReply};

/// `SITE HELP`: lists this server's SITE commands.
pub const HELP: &str = "HELP";
/// `SITE INFO`: name, role, process id, version, services of this server.
pub const INFO: &str = "INFO";
/// `SITE LOOKUP SERVICE`: which servers offer a service (main server only).
pub const LOOKUP: &str = "LOOKUP";
/// `SITE SERVERS`: every server in the registry (main server only).
pub const SERVERS: &str = "SERVERS";
/// SITE verbs that services may not use: the cluster's own, and libunftp's built-in `MD5`.
pub const RESERVED: [&str; 11] =
    [HELP, INFO, LOOKUP, SERVERS, STATS, NOCLOBBER, STORED, CHALLENGE, REGISTER, DEREGISTER, "MD5"];

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
pub fn verbs(server: &ServerContext) -> Vec<(String, Verb)> {
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
    server: Arc<ServerContext>,
    verb: Verb,
}

impl Site {
    /// The handler for `verb` on `server`.
    pub fn new(server: Arc<ServerContext>, verb: Verb) -> Self {
        Site { server, verb }
    }

    /// Answers one request; `Ok` is always a positive reply.
    pub async fn answer(&self, arguments: &str, storage: &FtpBackend) -> Result<Reply, SiteError> {
        let server = &self.server;
        match &self.verb {
            Verb::Help => Ok(help(server)),
            Verb::Info => Ok(Reply::new_with_string(ReplyCode::CommandOkay, info(server))),
            Verb::Lookup => lookup(server, arguments),
            Verb::Servers => servers(server),
            Verb::Membership(verb) => membership(server, verb, storage, arguments),
            Verb::Stats => site_files::stats(storage, arguments),
            Verb::NoClobber => site_files::no_clobber(storage, arguments),
            Verb::Stored => site_files::stored(storage),
            Verb::Compute(service) => {
                let words = service.parse(arguments)?;
                let answer = service.call(&words).await?;
                server.computed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Reply::new_with_string(
                    ReplyCode::CommandOkay,
                    one_line(&format!("{answer} (computed by {})", server.identity.name)),
                ))
            }
            Verb::Route(service) => route(server, service, arguments).await,
            Verb::NotOffered(service) => Err(SiteError::NotOffered {
                server: server.identity.name.clone(),
                service: service.clone(),
                main: main_of(server),
            }),
        }
    }
}

#[async_trait]
impl SiteCommandHandler<FtpBackend, DefaultUser> for Site {
    async fn handle(&self, context: &SiteCommandContext<FtpBackend, DefaultUser>) -> Reply {
        self.answer(&context.arguments, &context.storage).await.unwrap_or_else(|error| error.to_reply())
    }
}

impl std::fmt::Debug for Site {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Site").field("server", &self.server.identity.name).finish()
    }
}

/// Registry changes, on the main server only.
fn membership(server: &ServerContext, verb: &str, storage: &FtpBackend, arguments: &str) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, secret, worker_ttl, .. } = &server.cluster else {
        return Err(SiteError::MainOnly { verb: verb.to_string(), main: main_of(server) });
    };
    let membership =
        Membership { registry, secret: secret.as_ref(), ttl: *worker_ttl, main_name: &server.identity.name };
    match verb {
        CHALLENGE => Ok(site_cluster::challenge(storage)),
        REGISTER => site_cluster::register(&membership, storage, arguments),
        _ => site_cluster::deregister(&membership, storage, arguments),
    }
}

fn main_of(server: &ServerContext) -> Option<Box<ServerEntry>> {
    match &server.cluster {
        ClusterView::Main { .. } => Some(Box::new(server.identity.clone())),
        ClusterView::Worker { main } => main.clone().map(Box::new),
    }
}

fn help(server: &ServerContext) -> Reply {
    let mut lines = vec![format!("SITE commands of {} ({}):", server.identity.name, server.identity.role)];
    for (name, verb) in verbs(server) {
        let text = match verb {
            Verb::Help => "HELP: this list".to_string(),
            Verb::Info => "INFO: name, role, pid, version and services of this server".to_string(),
            Verb::Lookup if server.identity.role == Role::Main => {
                "LOOKUP SERVICE: the servers that offer SERVICE".to_string()
            }
            Verb::Servers if server.identity.role == Role::Main => "SERVERS: every server of the cluster".to_string(),
            Verb::Lookup | Verb::Servers => format!("{name}: answered by the main server only"),
            Verb::Membership(verb) if server.identity.role == Role::Main => match verb {
                CHALLENGE => "CHALLENGE: a challenge for the next REGISTER or DEREGISTER".to_string(),
                REGISTER => "REGISTER NAME HOST:PORT SERVICE[,SERVICE...] PROOF: add or renew a worker".to_string(),
                _ => "DEREGISTER NAME PROOF: remove a worker".to_string(),
            },
            Verb::Membership(verb) => format!("{verb}: answered by the main server only"),
            Verb::Stats => "STATS [FILE]: download counts since start (paths from the root)".to_string(),
            Verb::NoClobber => "NOCLOBBER [ON|OFF]: uploads never replace files; X exists -> X_copy1".to_string(),
            Verb::Stored => "STORED: the path this session's last upload was stored under".to_string(),
            Verb::Compute(service) => service.usage().to_string(),
            Verb::Route(name) => match server.catalog.get(&name) {
                Some(service) => format!("{} (routed to a worker)", service.usage()),
                None => format!("{name} ... (routed to a worker)"),
            },
            Verb::NotOffered(name) => format!("{name}: not offered here, ask the main server"),
        };
        lines.push(format!(" {}", one_line(&text)));
    }
    lines.push("End of SITE help".to_string());
    Reply::new_multiline(ReplyCode::HelpMessage, lines)
}

/// `name=SV0 role=main pid=… version=… address=… services=…`, one parseable line.
fn info(server: &ServerContext) -> String {
    let identity = &server.identity;
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(",")
        }
    };
    let mut text = format!(
        "name={} role={} pid={} version={} address={} services={} computed={}",
        identity.name,
        identity.role,
        std::process::id(),
        env!("CARGO_PKG_VERSION"),
        identity.address,
        list(&identity.services),
        server.computed.load(std::sync::atomic::Ordering::Relaxed)
    );
    match &server.cluster {
        ClusterView::Main { .. } => {
            let routed: Vec<String> = verbs(server)
                .into_iter()
                .filter_map(|(name, verb)| matches!(verb, Verb::Route(_)).then_some(name))
                .collect();
            text.push_str(&format!(" routes={}", list(&routed)));
        }
        ClusterView::Worker { main: Some(main) } => text.push_str(&format!(" main={}@{}", main.name, main.address)),
        ClusterView::Worker { main: None } => {}
    }
    text
}

/// `LOOKUP SERVICE` → `200 SERVICE NAME=ADDRESS [NAME=ADDRESS ...]`.
fn lookup(server: &ServerContext, arguments: &str) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, .. } = &server.cluster else {
        return Err(SiteError::MainOnly { verb: LOOKUP.to_string(), main: main_of(server) });
    };
    let service = parse_lookup(arguments)?;
    let offering = registry.lookup(&service);
    if offering.is_empty() {
        return if server.catalog.get(&service).is_some() || registry.services().contains(&service) {
            Err(SiteError::NoWorker(service))
        } else {
            Err(SiteError::UnknownService(service))
        };
    }
    let places: Vec<String> = offering.iter().map(|entry| format!("{}={}", entry.name, entry.address)).collect();
    Ok(Reply::new_with_string(ReplyCode::CommandOkay, format!("{service} {}", places.join(" "))))
}

/// The one service name `LOOKUP` takes, upper-cased.
fn parse_lookup(arguments: &str) -> Result<String, SiteError> {
    let usage = |message: &str| {
        SiteError::Usage(crate::services::ServiceError::Usage {
            message: message.to_string(),
            usage: "LOOKUP SERVICE: the servers that offer SERVICE".to_string(),
        })
    };
    match arguments.split_whitespace().collect::<Vec<_>>().as_slice() {
        [name] if is_valid_name(name) => Ok(name.to_ascii_uppercase()),
        [_] => Err(usage("a service name has 1 to 32 letters, digits, - or _")),
        [] => Err(usage("LOOKUP takes a service name")),
        _ => Err(usage("LOOKUP takes exactly one service name")),
    }
}

/// `SERVERS` → a multi-line `200` reply, one server per line: name, address, role, services.
fn servers(server: &ServerContext) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, .. } = &server.cluster else {
        return Err(SiteError::MainOnly { verb: SERVERS.to_string(), main: main_of(server) });
    };
    let servers = registry.servers();
    let mut lines = vec!["Servers (name address role services):".to_string()];
    for entry in &servers {
        let services = if entry.services.is_empty() { "-".to_string() } else { entry.services.join(",") };
        lines.push(format!(" {} {} {} {}", entry.name, entry.address, entry.role, services));
    }
    lines.push(format!("{} servers", servers.len()));
    Ok(Reply::new_multiline(ReplyCode::CommandOkay, lines))
}

/// Validates the request, then forwards it (rebuilt from the parsed words) to a worker that
/// offers `service`, trying a second worker once when the first one fails.
async fn route(server: &ServerContext, service: &str, arguments: &str) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, workers, .. } = &server.cluster else {
        return Err(SiteError::NoWorker(service.to_string()));
    };
    let words = match server.catalog.get(service) {
        Some(known) => known.parse(arguments)?,
        None => plain_words(&RoutedOnly(service.to_string()), arguments)?,
    };
    let line = std::iter::once(service.to_string()).chain(words).collect::<Vec<_>>().join(" ");
    let first = registry.pick(service).ok_or_else(|| SiteError::NoWorker(service.to_string()))?;
    let failure = match ask(workers, &first, service, &line).await {
        Err(failure @ (SiteError::Worker { .. } | SiteError::WorkerRefused { .. })) => failure,
        answered => return answered,
    };
    registry.mark_failed(&first.name, FAILED_WORKER_PAUSE);
    workers.forget(first.address);
    match registry.pick(service).filter(|second| second.name != first.name) {
        Some(second) => {
            tracing::warn!(error = %failure, retry_on = %second.name, "retrying on another worker");
            let answer = ask(workers, &second, service, &line).await;
            if matches!(answer, Err(SiteError::Worker { .. } | SiteError::WorkerRefused { .. })) {
                registry.mark_failed(&second.name, FAILED_WORKER_PAUSE);
                workers.forget(second.address);
            }
            answer
        }
        None => Err(failure),
    }
}

/// Sends `line` to `worker` and turns its reply into ours.
async fn ask(workers: &WorkerClient, worker: &ServerEntry, service: &str, line: &str) -> Result<Reply, SiteError> {
    match workers.call(worker.address, line).await {
        Ok(WorkerReply { code: 200, text }) => Ok(Reply::new_with_string(ReplyCode::CommandOkay, one_line(&text))),
        Ok(WorkerReply { code: 501, text }) => Err(SiteError::WorkerUsage(text)),
        Ok(reply) => Err(SiteError::WorkerRefused { service: service.to_string(), worker: worker.name.clone(), reply }),
        Err(source) => Err(SiteError::Worker { service: service.to_string(), worker: worker.name.clone(), source }),
    }
}

/// Stands in for a service the main server only knows by name (offered by a worker that
/// joined with it), so that its words are checked generically before routing.
struct RoutedOnly(String);

#[async_trait]
impl Service for RoutedOnly {
    fn name(&self) -> &str {
        &self.0
    }
    fn usage(&self) -> &str {
        "see SITE HELP on a worker that offers it"
    }
    fn parse(&self, arguments: &str) -> Result<Vec<String>, crate::services::ServiceError> {
        plain_words(self, arguments)
    }
    async fn call(&self, words: &[String]) -> Result<String, crate::services::ServiceError> {
        Ok(words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_lookup;

    #[test]
    fn lookup_takes_one_service_name() {
        assert_eq!(parse_lookup(" add ").expect("valid"), "ADD");
        assert!(parse_lookup("").is_err());
        assert!(parse_lookup("ADD SUB").is_err());
        assert!(parse_lookup("A;B").is_err());
    }
}
