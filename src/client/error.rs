//! [`ClientError`], everything a client command can fail with, and [`ClientError::exit_code`],
//! the one place that decides exit codes.

use std::path::PathBuf;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when the server refused the request (a 4xx or 5xx reply).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code for a usage error, a local file problem, or when the server cannot be reached,
/// refuses the login, or drops the connection.
pub const EXIT_USAGE_OR_CONNECTION: u8 = 2;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line or shell line is malformed.
    #[error("{0}")]
    Usage(String),
    /// The server cannot be reached, or the connection broke.
    #[error("cannot talk to {server}: {reason}")]
    Connection {
        /// The server's address as given.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the login.
    #[error("the server at {server} refused the login as {user}: {reply}")]
    Login {
        /// The server's address as given.
        server: String,
        /// The user name.
        user: String,
        /// The server's reply.
        reply: String,
    },
    /// The server refused the request.
    #[error("{what}: the server said {code} {text}")]
    Refused {
        /// What was asked, e.g. `add 2 x` or `get missing.txt`.
        what: String,
        /// The reply code.
        code: u32,
        /// The reply text.
        text: String,
    },
    /// A local file cannot be read or written.
    #[error("{path}: {source}")]
    Local {
        /// The local path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl ClientError {
    /// The process exit code for this error (0 is success): 1 when the server refused the
    /// request, 2 for usage, local-file and connection errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } => EXIT_REFUSED,
            ClientError::Usage(_)
            | ClientError::Connection { .. }
            | ClientError::Login { .. }
            | ClientError::Local { .. } => EXIT_USAGE_OR_CONNECTION,
        }
    }

    /// True when the connection is unusable after this error.
    pub fn breaks_connection(&self) -> bool {
        matches!(self, ClientError::Connection { .. } | ClientError::Login { .. })
    }
}
