//! What a main server needs from a registry shared with other main servers ([`SharedRegistry`];
//! the download counts have [`crate::ftp_backend::downloads::SharedCounts`]), and the etcd
//! endpoints' syntax. The implementation on etcd is `crate::cluster::etcd`, built with the
//! `etcd` feature.

use std::fmt;
use std::time::Duration;

use crate::cluster::registry::ServerEntry;

/// Most etcd endpoints one server is given.
pub const MAX_ENDPOINTS: usize = 16;

/// A registry shared by several main servers: registrations are written there, and every main
/// server's [`crate::Registry`] follows it.
#[async_trait::async_trait]
pub trait SharedRegistry: Send + Sync + fmt::Debug {
    /// Adds or renews `entry` for `ttl`.
    async fn publish(&self, entry: &ServerEntry, ttl: Duration) -> Result<(), String>;
    /// Removes the server `name`; true if it was there.
    async fn withdraw(&self, name: &str) -> Result<bool, String>;
    /// True while this main server is in step with it.
    fn is_online(&self) -> bool;
    /// What it is, for messages (`etcd (10.0.0.1:2379,…)`).
    fn describe(&self) -> String;
}

/// Why the endpoints of a shared registry are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// An endpoint is not `HOST:PORT`.
    #[error("bad etcd endpoint {0:?}: expected HOST:PORT (several separated by commas)")]
    Endpoint(String),
    /// No endpoint given, or too many.
    #[error("{0}")]
    Endpoints(String),
}

/// Reads `etcd://HOST:PORT[,HOST:PORT…]` (the `etcd://` may be left out) into endpoints.
pub fn parse_endpoints(text: &str) -> Result<Vec<String>, EndpointError> {
    let list = text.strip_prefix("etcd://").unwrap_or(text);
    let endpoints: Vec<String> = list.split(',').map(|endpoint| endpoint.trim().to_string()).collect();
    check_endpoints(&endpoints)?;
    Ok(endpoints)
}

/// Checks a list of `HOST:PORT` endpoints (from the command line or the config file).
pub fn check_endpoints(endpoints: &[String]) -> Result<(), EndpointError> {
    if endpoints.is_empty() || endpoints.iter().all(String::is_empty) {
        return Err(EndpointError::Endpoints("no etcd endpoint given".into()));
    }
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(EndpointError::Endpoints(format!("at most {MAX_ENDPOINTS} etcd endpoints")));
    }
    for endpoint in endpoints {
        let Some((host, port)) = endpoint.rsplit_once(':') else {
            return Err(EndpointError::Endpoint(endpoint.clone()));
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|character| character.is_ascii_alphanumeric() || ".-[]:".contains(character));
        if !host_ok || port.parse::<u16>().map_or(true, |port| port == 0) {
            return Err(EndpointError::Endpoint(endpoint.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn endpoints_parse_and_bad_ones_are_named() {
        assert_eq!(parse_endpoints("etcd://127.0.0.1:2379").expect("one"), ["127.0.0.1:2379"]);
        assert_eq!(parse_endpoints("etcd://a:1,b.example:2").expect("two"), ["a:1", "b.example:2"]);
        assert_eq!(parse_endpoints("[::1]:2379").expect("v6"), ["[::1]:2379"]);
        for bad in ["", "etcd://", "host", "host:", "host:0", "host:99999", ":2379", "a b:1", "x:1,,y:2", "h:1/path"] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?} accepted");
        }
        let many = vec!["h:1"; MAX_ENDPOINTS + 1].join(",");
        assert!(matches!(parse_endpoints(&many), Err(EndpointError::Endpoints(_))));
    }

    proptest! {
        #[test]
        fn any_endpoint_text_parses_or_is_refused_without_panic(text in "\\PC{0,100}") {
            let _ = parse_endpoints(&text);
        }
    }
}
