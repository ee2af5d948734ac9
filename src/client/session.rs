//! One logged-in FTP connection of the client (suppaftp's blocking API: a CLI has nothing else
//! to do while it waits): SITE requests, listings, downloads and uploads with progress.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use suppaftp::types::FileType;
use suppaftp::{FtpError, RustlsConnector, RustlsFtpStream, Status};

use crate::client::credentials;
use crate::client::error::ClientError;
use crate::client::ClientConfig;
use crate::protocol::{reply_lines, strip_code, SITE_REPLY_CODES};

/// A logged-in connection.
pub struct Session {
    pub(crate) ftp: RustlsFtpStream,
    pub(crate) server: String,
    pub(crate) user: String,
    pub(crate) no_clobber: bool,
    /// The remote working folder, once asked (`PWD`); forgotten by `cd`.
    cwd: Option<String>,
}

impl Session {
    /// Connects to the configured server and logs in with the client's name.
    pub fn connect(config: &ClientConfig) -> Result<Session, ClientError> {
        let server = config.server.clone();
        let broken = |reason: String| ClientError::Connection { server: server.clone(), reason };
        let address: SocketAddr = config
            .server
            .to_socket_addrs()
            .map_err(|error| broken(error.to_string()))?
            .next()
            .ok_or_else(|| broken("the name has no address".into()))?;
        let mut ftp =
            RustlsFtpStream::connect_timeout(address, config.timeout).map_err(|error| broken(error.to_string()))?;
        {
            let socket = ftp.get_ref();
            let _ = socket.set_read_timeout(Some(config.timeout));
            let _ = socket.set_write_timeout(Some(config.timeout));
        }
        let host = host_of(&config.server);
        if config.tls {
            let connector = RustlsConnector::from(credentials::tls_config(config.tls_ca.as_deref())?);
            ftp =
                ftp.into_secure(connector, host).map_err(|error| broken(format!("FTPS (AUTH TLS) failed: {error}")))?;
        }
        let refused = |error: FtpError| match error {
            FtpError::UnexpectedResponse(response) => ClientError::Login {
                server: server.clone(),
                user: config.name.clone(),
                reply: reply_line(&response.body),
            },
            other => broken(other.to_string()),
        };
        let asked = ftp
            .custom_command(format!("USER {}", config.name), &[Status::LoggedIn, Status::NeedPassword])
            .map_err(refused)?;
        if asked.status == Status::NeedPassword {
            let password = config
                .password
                .clone()
                .or_else(|| credentials::from_netrc(host, &config.name))
                .or_else(|| credentials::prompt(&config.name, &config.server))
                .unwrap_or_default();
            ftp.custom_command(format!("PASS {password}"), &[Status::LoggedIn]).map_err(refused)?;
        }
        ftp.transfer_type(FileType::Binary).map_err(|error| broken(error.to_string()))?;
        Ok(Session { ftp, server, user: config.name.clone(), no_clobber: false, cwd: None })
    }

    pub(crate) fn broken(&self, error: impl std::fmt::Display) -> ClientError {
        ClientError::Connection { server: self.server.clone(), reason: error.to_string() }
    }

    /// Turns a suppaftp error into ours: a reply is a refusal of `what`, anything else a
    /// broken connection.
    pub(crate) fn failure(&self, what: &str, error: FtpError) -> ClientError {
        match error {
            FtpError::UnexpectedResponse(response) => {
                let line = reply_line(&response.body);
                ClientError::Refused {
                    what: what.to_string(),
                    code: response.status.code(),
                    text: strip_code(&line).to_string(),
                }
            }
            other => self.broken(other),
        }
    }

    /// Like `failure`, but a broken connection is reported as `transfer` breaking off.
    pub(crate) fn transfer_failure(&self, what: &str, transfer: &str, error: FtpError) -> ClientError {
        match error {
            FtpError::UnexpectedResponse(_) => self.failure(what, error),
            other => self.broken(format!("{transfer} broke off: {other}")),
        }
    }

    /// Sends `SITE <line>`; a 2xx reply's text (without the code) is the answer.
    pub fn site(&mut self, line: &str, what: &str) -> Result<String, ClientError> {
        let response = self
            .ftp
            .custom_command(format!("SITE {line}"), &SITE_REPLY_CODES)
            .map_err(|error| self.failure(what, error))?;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let text = reply_lines(&body).join("\n");
        match response.status.code() {
            200..=299 => Ok(text),
            code => Err(ClientError::Refused { what: what.to_string(), code, text: text.replace('\n', " ") }),
        }
    }

    /// The remote listing of `path` (LIST).
    pub fn list(&mut self, path: Option<&str>) -> Result<Vec<String>, ClientError> {
        let what = format!("ls {}", path.unwrap_or(""));
        self.ftp.list(path).map_err(|error| self.failure(what.trim_end(), error))
    }

    /// True when the server closed the connection (or said something unasked, such as a
    /// `421` before closing) while it sat idle: it must not be used for the next command.
    pub fn is_stale(&self) -> bool {
        let socket = self.ftp.get_ref();
        if socket.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let peeked = socket.peek(&mut byte);
        let _ = socket.set_nonblocking(false);
        !matches!(peeked, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// The remote working folder (asked once, then remembered until `cd`).
    pub fn cwd(&mut self) -> Result<String, ClientError> {
        if let Some(cwd) = &self.cwd {
            return Ok(cwd.clone());
        }
        let cwd = self.ftp.pwd().map_err(|error| self.failure("pwd", error))?;
        self.cwd = Some(cwd.clone());
        Ok(cwd)
    }

    /// `path` as an absolute remote path.
    pub fn absolute(&mut self, path: &str) -> Result<String, ClientError> {
        let joined = if path.starts_with('/') { path.to_string() } else { format!("{}/{path}", self.cwd()?) };
        Ok(crate::ftp_backend::downloads::normalize(Path::new(&joined)))
    }

    /// `cd PATH`; returns the new remote folder.
    pub fn cd(&mut self, path: &str) -> Result<String, ClientError> {
        self.ftp.cwd(path).map_err(|error| self.failure(&format!("cd {path}"), error))?;
        self.cwd = None;
        self.cwd()
    }

    /// `mkdir PATH`.
    pub fn mkdir(&mut self, path: &str) -> Result<(), ClientError> {
        self.ftp.mkdir(path).map_err(|error| self.failure(&format!("mkdir {path}"), error))
    }

    /// `rm FILE`.
    pub fn rm(&mut self, path: &str) -> Result<(), ClientError> {
        self.ftp.rm(path).map_err(|error| self.failure(&format!("rm {path}"), error))
    }

    /// `rmdir PATH`.
    pub fn rmdir(&mut self, path: &str) -> Result<(), ClientError> {
        self.ftp.rmdir(path).map_err(|error| self.failure(&format!("rmdir {path}"), error))
    }

    /// `mv FROM TO`.
    pub fn mv(&mut self, from: &str, to: &str) -> Result<(), ClientError> {
        self.ftp.rename(from, to).map_err(|error| self.failure(&format!("mv {from} {to}"), error))
    }

    /// The names in a remote folder (`NLST`), without any folder part.
    pub fn names(&mut self, path: Option<&str>) -> Result<Vec<String>, ClientError> {
        let what = format!("ls {}", path.unwrap_or(""));
        let names = self.ftp.nlst(path).map_err(|error| self.failure(what.trim_end(), error))?;
        Ok(names
            .into_iter()
            .map(|name| name.rsplit('/').next().unwrap_or_default().to_string())
            .filter(|name| !name.is_empty())
            .collect())
    }

    /// Says goodbye (errors do not matter any more).
    pub fn quit(mut self) {
        let _ = self.ftp.quit();
    }
}

/// The host part of `HOST:PORT` (`[::1]:21` → `::1`), for TLS's name check.
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The first line of a reply.
pub(crate) fn reply_line(body: &[u8]) -> String {
    String::from_utf8_lossy(body).lines().next().unwrap_or_default().trim_end().to_string()
}
