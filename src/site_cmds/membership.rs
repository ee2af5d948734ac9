//! The SITE commands that change the registry (RFC 959 §4.1.3), answered by the main server
//! only: `CHALLENGE`, `REGISTER NAME ADDRESS SERVICES PROOF` and `DEREGISTER NAME PROOF`.
//!
//! Being logged in is not enough: a request must carry the HMAC of the cluster secret over this
//! session's last challenge and the request itself (see [`crate::cluster::secret`]), or the registry
//! stays as it is.

use std::net::SocketAddr;
use std::time::Duration;

use libunftp::options::{Reply, ReplyCode};

use crate::cluster::registry::{Registry, Role, ServerEntry, MAX_SERVICES_PER_SERVER};
use crate::cluster::secret::ClusterSecret;
use crate::cluster::shared::SharedRegistry;
use crate::ftp_backend::FtpBackend;
use crate::protocol::{deregister_request, register_request, CHALLENGE, REGISTER};
use crate::services::{is_valid_name, ServiceError};
use crate::site_cmds::{ClusterView, SiteContext, SiteError};

/// Most bytes of arguments a registry change may have.
const MAX_ARGUMENT_BYTES: usize = 4096;

/// What the main server needs to change its registry.
pub struct Membership<'a> {
    /// The registry.
    pub registry: &'a Registry,
    /// The cluster secret, if registration is enabled.
    pub secret: Option<&'a ClusterSecret>,
    /// How long a registration lasts.
    pub ttl: Duration,
    /// The main server's own name, which no worker may take.
    pub main_name: &'a str,
    /// The registry shared with other main servers, if any.
    pub shared: Option<&'a dyn SharedRegistry>,
}

/// Answers a registry change on the main server; workers refuse it, naming the main server.
pub async fn answer(
    server: &SiteContext,
    verb: &str,
    storage: &FtpBackend,
    arguments: &str,
) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, secret, worker_ttl, gate, policy, shared, .. } = &server.cluster else {
        return Err(SiteError::MainOnly { verb: verb.to_string(), main: server.main_server() });
    };
    let membership = Membership {
        registry,
        secret: secret.as_ref(),
        ttl: *worker_ttl,
        main_name: &server.identity.name,
        shared: shared.as_deref(),
    };
    let address = storage.peer().ip();
    let rule = policy.load().lockout_rule();
    if verb != CHALLENGE && gate.lockout.locked(address, rule).is_some() {
        return Err(SiteError::Unauthorized("too many failed proofs from your address; try again later".into()));
    }
    let answer = match verb {
        CHALLENGE => Ok(challenge(storage)),
        REGISTER => register(&membership, storage, arguments).await,
        _ => deregister(&membership, storage, arguments).await,
    };
    if matches!(answer, Err(SiteError::Unauthorized(_))) {
        // A wrong proof counts as a failed login for the lockout, and waits like one.
        gate.lockout.fail(address, rule);
        tokio::time::sleep(crate::access::FAILURE_DELAY).await;
    }
    answer
}

fn usage(usage: &str, message: &str) -> SiteError {
    SiteError::Service(ServiceError::Usage { message: message.to_string(), usage: usage.to_string() })
}

/// `CHALLENGE` → `200 <challenge>`.
pub fn challenge(storage: &FtpBackend) -> Reply {
    Reply::new_with_string(ReplyCode::CommandOkay, storage.issue_challenge())
}

/// Checks `proof` for `request` against the session's challenge (which it uses up).
fn authorize(
    membership: &Membership<'_>,
    storage: &FtpBackend,
    request: &str,
    proof: Option<&str>,
) -> Result<(), SiteError> {
    let Some(secret) = membership.secret else {
        return Err(SiteError::NotTaken("registration is disabled on this server".into()));
    };
    let Some(proof) = proof else {
        return Err(SiteError::Unauthorized("changing the registry needs the cluster secret".into()));
    };
    let Some(challenge) = storage.take_challenge() else {
        return Err(SiteError::NeedChallenge);
    };
    if !secret.verify(&challenge, request, proof) {
        tracing::warn!(request, "registry change with a wrong proof refused");
        return Err(SiteError::Unauthorized("wrong proof of the cluster secret".into()));
    }
    Ok(())
}

/// A parsed `REGISTER NAME ADDRESS SERVICES [PROOF]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The worker's name.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// The services it offers, upper case.
    pub services: Vec<String>,
    /// The proof of the cluster secret, if given.
    pub proof: Option<String>,
}

const REGISTER_USAGE: &str = "REGISTER NAME HOST:PORT SERVICE[,SERVICE...] PROOF";

/// Parses the arguments of `REGISTER` (pure).
pub fn parse_register(arguments: &str) -> Result<RegisterRequest, SiteError> {
    if arguments.len() > MAX_ARGUMENT_BYTES {
        return Err(usage(REGISTER_USAGE, "arguments too long"));
    }
    let words: Vec<&str> = arguments.split_whitespace().collect();
    let (name, address, services, proof) = match words.as_slice() {
        [name, address, services] => (*name, *address, *services, None),
        [name, address, services, proof] => (*name, *address, *services, Some(proof.to_string())),
        _ => return Err(usage(REGISTER_USAGE, "REGISTER takes a name, an address, services and a proof")),
    };
    if !is_valid_name(name) {
        return Err(usage(REGISTER_USAGE, "a name has 1 to 32 letters, digits, - or _"));
    }
    let address: SocketAddr =
        address.parse().map_err(|_| usage(REGISTER_USAGE, "the address must be HOST:PORT with a numeric host"))?;
    let services: Vec<String> = services.split(',').map(str::to_ascii_uppercase).collect();
    if services.len() > MAX_SERVICES_PER_SERVER || !services.iter().all(|service| is_valid_name(service)) {
        return Err(usage(REGISTER_USAGE, "services are up to 64 comma-separated names"));
    }
    Ok(RegisterRequest { name: name.to_string(), address, services, proof })
}

/// `REGISTER NAME ADDRESS SERVICES PROOF` → `200 registered NAME at ADDRESS for Ns`.
pub async fn register(membership: &Membership<'_>, storage: &FtpBackend, arguments: &str) -> Result<Reply, SiteError> {
    let RegisterRequest { name, address, services, proof } = parse_register(arguments)?;
    authorize(membership, storage, &register_request(&name, address, &services), proof.as_deref())?;
    if name == membership.main_name {
        return Err(SiteError::NotTaken(format!("{name} is the main server's name")));
    }
    let entry = ServerEntry { name: name.clone(), address, role: Role::Worker, services };
    if let Some(shared) = membership.shared {
        // Written to the shared registry first, so that no main server routes to a registration
        // it refused; this main server sees it at once, the others through their watch.
        let entry = Registry::validate(entry).map_err(|error| SiteError::NotTaken(error.to_string()))?;
        if membership.registry.is_local(&name) {
            return Err(SiteError::NotTaken(format!("{name} is the name of a server of {}", membership.main_name)));
        }
        if membership.registry.servers().iter().any(|server| server.name == name && server.role == Role::Main) {
            return Err(SiteError::NotTaken(format!("{name} is a main server's name")));
        }
        shared.publish(&entry, membership.ttl).await.map_err(SiteError::RegistryUnavailable)?;
        membership.registry.upsert_shared(entry).map_err(|error| SiteError::NotTaken(error.to_string()))?;
    } else {
        membership
            .registry
            .register_for(entry, membership.ttl)
            .map_err(|error| SiteError::NotTaken(error.to_string()))?;
    }
    tracing::info!(worker = %name, %address, "worker registered");
    Ok(Reply::new_with_string(
        ReplyCode::CommandOkay,
        format!("registered {name} at {address} for {}s", membership.ttl.as_secs()),
    ))
}

/// `DEREGISTER NAME PROOF` → `200 deregistered NAME`.
pub async fn deregister(
    membership: &Membership<'_>,
    storage: &FtpBackend,
    arguments: &str,
) -> Result<Reply, SiteError> {
    const USAGE: &str = "DEREGISTER NAME PROOF";
    let words: Vec<&str> = arguments.split_whitespace().collect();
    let (name, proof) = match words.as_slice() {
        [name] => (*name, None),
        [name, proof] => (*name, Some(*proof)),
        _ => return Err(usage(USAGE, "DEREGISTER takes a name and a proof")),
    };
    if !is_valid_name(name) {
        return Err(usage(USAGE, "a name has 1 to 32 letters, digits, - or _"));
    }
    authorize(membership, storage, &deregister_request(name), proof)?;
    if name == membership.main_name {
        return Err(SiteError::NotTaken(format!("{name} is the main server")));
    }
    let removed = match membership.shared {
        Some(shared) => {
            let withdrawn = shared.withdraw(name).await.map_err(SiteError::RegistryUnavailable)?;
            membership.registry.remove_shared(name) || withdrawn
        }
        None => membership.registry.deregister(name),
    };
    if !removed {
        return Err(SiteError::NotTaken(format!("no server {name} is registered")));
    }
    tracing::info!(worker = name, "worker deregistered");
    Ok(Reply::new_with_string(ReplyCode::CommandOkay, format!("deregistered {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn register_requests_parse() {
        let parsed = parse_register("W1 127.0.0.1:2200 add,MUL 00ff").expect("valid");
        assert_eq!(parsed.name, "W1");
        assert_eq!(parsed.services, ["ADD", "MUL"]);
        assert_eq!(parsed.proof.as_deref(), Some("00ff"));
        for bad in ["", "W1", "W1 here ADD", "W1 127.0.0.1:1 A;B", "W/1 127.0.0.1:1 ADD", "a b c d e"] {
            assert!(parse_register(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_register_arguments_parse_or_are_refused_without_panic(arguments in "\\PC{0,200}") {
            let _ = parse_register(&arguments);
        }

        #[test]
        fn a_signed_request_line_parses_back(name in "[A-Za-z0-9_-]{1,32}", port in 1u16.., services in proptest::collection::vec("[A-Z0-9_-]{1,32}", 1..8)) {
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let line = register_request(&name, address, &services);
            let arguments = line.strip_prefix("REGISTER ").expect("verb");
            let parsed = parse_register(&format!("{arguments} ab")).expect("valid");
            prop_assert_eq!(parsed, RegisterRequest { name, address, services, proof: Some("ab".into()) });
        }
    }
}
