//! [`SiteError`], everything a SITE command can fail with, and [`SiteError::to_reply`], the one
//! place where errors become FTP reply codes (RFC 959 §4.2 meanings).

use libunftp::options::{Reply, ReplyCode};

use crate::cluster::registry::ServerEntry;
use crate::cluster::worker_client::WorkerError;
use crate::services::ServiceError;

/// Why a SITE command did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The service refused: malformed arguments (`501`) or a transient outage (`451`).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A worker refused the arguments the main server forwarded (`501`, its text relayed).
    #[error("{0}")]
    WorkerUsage(String),
    /// A worker's service said "try again later" (`451`, its text relayed).
    #[error("{0}")]
    WorkerTransient(String),
    /// A command that only the main server answers was sent to a worker (`502`).
    #[error("{verb} is answered by the main server{}", main_hint(.main))]
    MainOnly {
        /// The SITE verb.
        verb: String,
        /// The main server, when this worker knows it.
        main: Option<Box<ServerEntry>>,
    },
    /// This worker does not offer the service (`504`).
    #[error("{server} does not offer {service}; ask the main server{} (SITE LOOKUP {service})", main_hint(.main))]
    NotOffered {
        /// This server's name.
        server: String,
        /// The service asked for.
        service: String,
        /// The main server, when this worker knows it.
        main: Option<Box<ServerEntry>>,
    },
    /// No server in the cluster knows the service (`504`).
    #[error("no server offers {0}")]
    UnknownService(String),
    /// A registry change without a valid proof of the cluster secret (`530`).
    #[error("{0}")]
    Unauthorized(String),
    /// A registry change before `SITE CHALLENGE` (`503`).
    #[error("send SITE CHALLENGE first")]
    NeedChallenge,
    /// A request that is well-formed and allowed, but cannot be done (`550`).
    #[error("{0}")]
    NotTaken(String),
    /// The user may not call this service (`550`).
    #[error("{user} may not use {service}")]
    ServiceNotAllowed {
        /// The user.
        user: String,
        /// The service.
        service: String,
    },
    /// `STATS FILE` for a file that does not exist (`550`).
    #[error("no such file: {0}")]
    NoSuchFile(String),
    /// `STORED` before this session stored anything (`550`).
    #[error("nothing stored in this session yet")]
    NothingStored,
    /// The shared registry (etcd) cannot be reached, so the registry cannot change now
    /// (`451`); the main server keeps routing with the registry it last saw.
    #[error("the shared registry is unreachable, try again later ({0})")]
    RegistryUnavailable(String),
    /// The service exists but no worker offering it is available right now (`451`).
    #[error("no worker available for {0}, try again later")]
    NoWorker(String),
    /// The worker chosen for the service failed or timed out (`451`).
    #[error("worker {worker} failed for {service}: {source}")]
    Worker {
        /// The service asked for.
        service: String,
        /// The worker's name.
        worker: String,
        /// What failed.
        source: WorkerError,
    },
    /// The worker answered with an error the main server cannot relay (`451`).
    #[error("worker {worker} refused {service}: {code} {text}")]
    WorkerRefused {
        /// The service asked for.
        service: String,
        /// The worker's name.
        worker: String,
        /// The worker's reply code.
        code: u32,
        /// The worker's reply text.
        text: String,
    },
}

fn main_hint(main: &Option<Box<ServerEntry>>) -> String {
    match main {
        Some(main) => format!(" {} at {}", main.name, main.address),
        None => String::new(),
    }
}

impl SiteError {
    /// The only place where SITE errors become FTP replies.
    ///
    /// Worker failures are transient (`451`) and their details go to the log, not to the client.
    pub fn to_reply(&self) -> Reply {
        let code = match self {
            SiteError::Service(ServiceError::Usage { .. }) | SiteError::WorkerUsage(_) => {
                ReplyCode::ParameterSyntaxError
            }
            SiteError::Service(ServiceError::Transient(_))
            | SiteError::WorkerTransient(_)
            | SiteError::NoWorker(_)
            | SiteError::RegistryUnavailable(_) => ReplyCode::LocalError,
            SiteError::MainOnly { .. } => ReplyCode::CommandNotImplemented,
            SiteError::NotOffered { .. } | SiteError::UnknownService(_) => ReplyCode::CommandNotImplementedForParameter,
            SiteError::NoSuchFile(_)
            | SiteError::NothingStored
            | SiteError::NotTaken(_)
            | SiteError::ServiceNotAllowed { .. } => ReplyCode::FileError,
            SiteError::Unauthorized(_) => ReplyCode::NotLoggedIn,
            SiteError::NeedChallenge => ReplyCode::BadCommandSequence,
            SiteError::Worker { service, worker, .. } | SiteError::WorkerRefused { service, worker, .. } => {
                tracing::warn!(error = %self, "worker request failed");
                return Reply::new_with_string(
                    ReplyCode::LocalError,
                    format!("worker {worker} is unavailable for {service}, try again later"),
                );
            }
        };
        Reply::new_with_string(code, one_line(&self.to_string()))
    }
}

/// `text` made safe for one reply line: every control character (CR and LF above all, which
/// libunftp would send raw and so desynchronise the client) becomes a space.
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|character| if character.is_control() { ' ' } else { character }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::registry::Role;

    fn code_of(error: SiteError) -> (u32, String) {
        match error.to_reply() {
            Reply::CodeAndMsg { code, msg } => (code as u32, msg),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    #[test]
    fn errors_map_to_rfc959_codes() {
        let main = Some(Box::new(ServerEntry {
            name: "SV0".into(),
            address: "127.0.0.1:2121".parse().expect("literal"),
            role: Role::Main,
            services: vec![],
        }));
        let usage = ServiceError::Usage { message: "bad".into(), usage: "ADD A B".into() };
        assert_eq!(code_of(SiteError::Service(usage)).0, 501);
        let (code, text) = code_of(SiteError::Service(ServiceError::Transient("the printer is on fire".into())));
        assert_eq!((code, text.as_str()), (451, "the printer is on fire"));
        let (code, text) = code_of(SiteError::MainOnly { verb: "LOOKUP".into(), main: main.clone() });
        assert_eq!((code, text.as_str()), (502, "LOOKUP is answered by the main server SV0 at 127.0.0.1:2121"));
        let (code, text) = code_of(SiteError::NotOffered { server: "SV2".into(), service: "ADD".into(), main });
        assert_eq!(code, 504);
        assert!(text.contains("SV0 at 127.0.0.1:2121"), "{text}");
        assert_eq!(code_of(SiteError::UnknownService("FOO".into())).0, 504);
        assert_eq!(code_of(SiteError::NoWorker("ADD".into())).0, 451);
        let refused = SiteError::WorkerRefused {
            service: "ADD".into(),
            worker: "SV1".into(),
            code: 502,
            text: "secret\r\ndetail".into(),
        };
        let (code, text) = code_of(refused);
        assert_eq!(code, 451);
        assert!(!text.contains("secret"), "details stay in the log: {text}");
    }

    #[test]
    fn one_line_removes_line_breaks() {
        assert_eq!(one_line("a\r\nb\tc"), "a  b c");
        assert_eq!(one_line("5 (computed by SV1)"), "5 (computed by SV1)");
    }
}
