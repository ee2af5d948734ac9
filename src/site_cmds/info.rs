//! The SITE commands that describe the cluster: `HELP` (this server's verbs), `INFO` (name,
//! role, pid, version, services), and on the main server `LOOKUP SERVICE` and `SERVERS`.

use libunftp::options::{Reply, ReplyCode};

use crate::cluster::registry::Role;
use crate::protocol::{CHALLENGE, LOOKUP, REGISTER, SERVERS};
use crate::services::{is_valid_name, ServiceError};
use crate::site_cmds::{one_line, verbs, ClusterView, SiteContext, SiteError, Verb};

/// `HELP` → a multi-line `214` reply, one line per SITE verb of this server.
pub fn help(server: &SiteContext) -> Reply {
    let main = server.identity.role == Role::Main;
    let mut lines = vec![format!("SITE commands of {} ({}):", server.identity.name, server.identity.role)];
    for (name, verb) in verbs(server) {
        let text = match verb {
            Verb::Help => "HELP: this list".to_string(),
            Verb::Info => "INFO: name, role, pid, version and services of this server".to_string(),
            Verb::Lookup if main => "LOOKUP SERVICE: the servers that offer SERVICE".to_string(),
            Verb::Servers if main => "SERVERS: every server of the cluster".to_string(),
            Verb::Lookup | Verb::Servers => format!("{name}: answered by the main server only"),
            Verb::Membership(verb) if main => match verb {
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
pub fn info(server: &SiteContext) -> String {
    let identity = &server.identity;
    let list = |names: &[String]| if names.is_empty() { "-".to_string() } else { names.join(",") };
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
        ClusterView::Worker { main } => {
            if let Some(main) = main.get() {
                text.push_str(&format!(" main={}@{}", main.name, main.address));
            }
        }
    }
    text
}

/// `LOOKUP SERVICE` → `200 SERVICE NAME=ADDRESS [NAME=ADDRESS ...]`.
pub fn lookup(server: &SiteContext, arguments: &str) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, .. } = &server.cluster else {
        return Err(SiteError::MainOnly { verb: LOOKUP.to_string(), main: server.main_server() });
    };
    let service = parse_lookup(arguments)?;
    let mut offering = registry.lookup(&service);
    // By name: every main server sharing a registry gives the same answer.
    offering.sort_by(|one, other| one.name.cmp(&other.name));
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
pub fn parse_lookup(arguments: &str) -> Result<String, SiteError> {
    let usage = |message: &str| {
        SiteError::Service(ServiceError::Usage {
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
pub fn servers(server: &SiteContext) -> Result<Reply, SiteError> {
    let ClusterView::Main { registry, .. } = &server.cluster else {
        return Err(SiteError::MainOnly { verb: SERVERS.to_string(), main: server.main_server() });
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

#[cfg(test)]
mod tests {
    use super::parse_lookup;
    use proptest::prelude::*;

    #[test]
    fn lookup_takes_one_service_name() {
        assert_eq!(parse_lookup(" add ").expect("valid"), "ADD");
        assert!(parse_lookup("").is_err());
        assert!(parse_lookup("ADD SUB").is_err());
        assert!(parse_lookup("A;B").is_err());
    }

    proptest! {
        #[test]
        fn lookup_arguments_never_panic_and_names_come_back_upper_case(arguments in "\\PC{0,100}", name in "[A-Za-z0-9_-]{1,32}") {
            let _ = parse_lookup(&arguments);
            prop_assert_eq!(parse_lookup(&format!("  {name} ")).expect("valid"), name.to_ascii_uppercase());
        }
    }
}
