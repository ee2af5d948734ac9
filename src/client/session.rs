//! One logged-in FTP connection of the client (suppaftp's blocking API: a CLI has nothing else
//! to do while it waits): SITE requests, listings, downloads and uploads with progress.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{FtpError, RustlsConnector, RustlsFtpStream, Status};

use crate::client::credentials;
use crate::client::error::ClientError;
use crate::client::progress::Progress;
use crate::client::ClientConfig;
use crate::protocol::{reply_lines, strip_code, NOCLOBBER, SITE_REPLY_CODES, STORED};

/// Chunk size for transfers.
const CHUNK: usize = 256 * 1024;

/// A logged-in connection.
pub struct Session {
    ftp: RustlsFtpStream,
    server: String,
    no_clobber: bool,
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
        Ok(Session { ftp, server, no_clobber: false })
    }

    fn broken(&self, error: impl std::fmt::Display) -> ClientError {
        ClientError::Connection { server: self.server.clone(), reason: error.to_string() }
    }

    /// Turns a suppaftp error into ours: a reply is a refusal of `what`, anything else a
    /// broken connection.
    fn failure(&self, what: &str, error: FtpError) -> ClientError {
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
    fn transfer_failure(&self, what: &str, transfer: &str, error: FtpError) -> ClientError {
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

    /// Downloads `remote` into `folder` under its base name, through a temporary name that is
    /// renamed only when the transfer completed; returns the local path.
    pub fn get(&mut self, remote: &str, folder: &Path) -> Result<PathBuf, ClientError> {
        let what = format!("get {remote}");
        let name =
            Path::new(remote).file_name().ok_or_else(|| ClientError::Usage(format!("{remote:?} names no file")))?;
        let target = folder.join(name);
        let size = self.ftp.size(remote).map_err(|error| match self.failure(&what, error) {
            ClientError::Refused { code: 550, .. } => {
                ClientError::Refused { what: what.clone(), code: 550, text: format!("no such remote file: {remote}") }
            }
            other => other,
        })?;
        let partial = folder.join(format!(".{}.ftpcalc-part-{}", name.to_string_lossy(), std::process::id()));
        let result = self.download_into(remote, &partial, size as u64, &what);
        match result {
            Ok(()) => std::fs::rename(&partial, &target)
                .map_err(|source| ClientError::Local { path: target.clone(), source })?,
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                return Err(error);
            }
        }
        Ok(target)
    }

    fn download_into(&mut self, remote: &str, partial: &Path, size: u64, what: &str) -> Result<(), ClientError> {
        let local = |source| ClientError::Local { path: partial.to_path_buf(), source };
        let mut file = File::create(partial).map_err(local)?;
        let mut stream = self.ftp.retr_as_stream(remote).map_err(|error| self.failure(what, error))?;
        let _ = stream.get_ref().get_ref().set_read_timeout(Some(Duration::from_secs(30)));
        let mut progress = Progress::start(remote, size);
        let mut buffer = vec![0; CHUNK];
        let mut received = 0u64;
        loop {
            let read = match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) => {
                    progress.abandon();
                    return Err(self.broken(format!("download of {remote} broke off: {error}")));
                }
            };
            file.write_all(&buffer[..read]).map_err(local)?;
            received += read as u64;
            progress.advance(read as u64);
        }
        if let Err(error) = stream.finish() {
            progress.abandon();
            return Err(self.transfer_failure(what, &format!("download of {remote}"), error));
        }
        if received != size {
            progress.abandon();
            return Err(self.broken(format!("download of {remote} ended after {received} of {size} bytes")));
        }
        file.sync_all().map_err(local)?;
        progress.finish();
        Ok(())
    }

    /// Uploads `local` under its base name without ever replacing a remote file; returns the
    /// remote path it was stored under (`/meme_copy1.png` when `/meme.png` existed).
    pub fn put(&mut self, local: &Path) -> Result<String, ClientError> {
        let name = local
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| ClientError::Usage(format!("{local:?} names no file")))?;
        let what = format!("put {name}");
        let local_error = |source| ClientError::Local { path: local.to_path_buf(), source };
        let mut file = File::open(local).map_err(local_error)?;
        let size = file.metadata().map_err(local_error)?.len();
        if !self.no_clobber {
            self.site(&format!("{NOCLOBBER} ON"), "turning no-clobber on")?;
            self.no_clobber = true;
        }
        let mut stream = self.ftp.put_with_stream(&name).map_err(|error| self.failure(&what, error))?;
        let mut progress = Progress::start(&name, size);
        let mut buffer = vec![0; CHUNK];
        loop {
            let read = file.read(&mut buffer).map_err(local_error)?;
            if read == 0 {
                break;
            }
            if let Err(error) = stream.write_all(&buffer[..read]) {
                progress.abandon();
                return Err(self.broken(format!("upload of {name} broke off: {error}")));
            }
            progress.advance(read as u64);
        }
        if let Err(error) = stream.finish() {
            progress.abandon();
            return Err(self.transfer_failure(&what, &format!("upload of {name}"), error));
        }
        progress.finish();
        self.site(STORED, &what)
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
fn reply_line(body: &[u8]) -> String {
    String::from_utf8_lossy(body).lines().next().unwrap_or_default().trim_end().to_string()
}
