//! [`WorkerSpec`]: one worker to start next to the main server, as the command line writes it
//! (`NAME=SERVICE[+SERVICE...][@HOST:PORT]`).

use std::net::SocketAddr;
use std::str::FromStr;

use crate::services::is_valid_name;

/// One worker server to start next to the main server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// Its name, e.g. `SV1`.
    pub name: String,
    /// The services it computes, upper case.
    pub services: Vec<String>,
    /// Where it listens; `None` puts it next to the main server (main port + its position, or an
    /// ephemeral port when the main server's port is 0).
    pub listen: Option<SocketAddr>,
}

/// Why a worker specification does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker {spec:?}: {reason}; expected NAME=SERVICE[+SERVICE...][@HOST:PORT], e.g. SV1=ADD+SUB@127.0.0.1:2122")]
pub struct WorkerSpecError {
    spec: String,
    reason: String,
}

impl WorkerSpec {
    /// A worker called `name` offering `services`, placed next to the main server.
    pub fn new(name: impl Into<String>, services: &[&str]) -> Self {
        WorkerSpec {
            name: name.into(),
            services: services.iter().map(|service| service.to_ascii_uppercase()).collect(),
            listen: None,
        }
    }
}

impl std::fmt::Display for WorkerSpec {
    /// `NAME=SERVICE[+SERVICE...][@HOST:PORT]`, the form [`WorkerSpec::from_str`] parses.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}={}", self.name, self.services.join("+"))?;
        match self.listen {
            Some(address) => write!(formatter, "@{address}"),
            None => Ok(()),
        }
    }
}

impl FromStr for WorkerSpec {
    type Err = WorkerSpecError;

    /// Parses `NAME=SERVICE[+SERVICE...][@HOST:PORT]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| WorkerSpecError { spec: spec.to_string(), reason: reason.to_string() };
        let (name, rest) = spec.split_once('=').ok_or_else(|| error("no '='"))?;
        let (services, listen) = match rest.split_once('@') {
            Some((services, address)) => (services, Some(address.parse().map_err(|_| error("bad address"))?)),
            None => (rest, None),
        };
        if !is_valid_name(name) {
            return Err(error("a name has 1 to 32 letters, digits, - or _"));
        }
        let services: Vec<String> = services.split('+').map(str::to_ascii_uppercase).collect();
        if services.iter().any(|service| !is_valid_name(service)) {
            return Err(error("a service name has 1 to 32 letters, digits, - or _"));
        }
        Ok(WorkerSpec { name: name.to_string(), services, listen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn worker_specs_parse() {
        let spec: WorkerSpec = "SV7=add+MUL@127.0.0.1:2200".parse().expect("valid");
        assert_eq!(spec.name, "SV7");
        assert_eq!(spec.services, vec!["ADD", "MUL"]);
        assert_eq!(spec.listen, Some("127.0.0.1:2200".parse().expect("literal")));
        assert_eq!("W=INC".parse::<WorkerSpec>().expect("valid").listen, None);
        for bad in ["", "SV1", "SV1=", "SV1=ADD@nowhere", "S V=ADD", "SV1=A;B"] {
            assert!(bad.parse::<WorkerSpec>().is_err(), "{bad:?} should not parse");
        }
    }

    proptest! {
        #[test]
        fn any_worker_spec_parses_or_is_refused_without_panic(spec in "\\PC{0,80}") {
            let _ = spec.parse::<WorkerSpec>();
        }

        #[test]
        fn worker_specs_round_trip(name in "[A-Za-z0-9_-]{1,32}", services in proptest::collection::vec("[A-Z0-9_-]{1,32}", 1..6), port in proptest::option::of(1u16..)) {
            let listen = port.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
            let spec = WorkerSpec { name, services, listen };
            prop_assert_eq!(spec.to_string().parse::<WorkerSpec>().expect("valid"), spec);
        }
    }
}
