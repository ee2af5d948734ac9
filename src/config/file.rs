//! The TOML configuration file (`--config FILE`): every key, checked, with messages that name
//! the file and the line. [`ConfigFile::load`] reads and checks it; [`ConfigFile::apply`] lays
//! it over [`ServerOptions`]; the command line's flags then override what they name. Relative
//! paths in the file are relative to the file's folder.
//!
//! ```toml
//! listen = "127.0.0.1:2121"            # the main server's (or the worker's) address
//! passive_ports = "49152-65535"
//! passive_host = "203.0.113.7"         # what PASV announces (NAT, containers); default: the control connection's address
//! no_clobber = false
//! secret_file = "cluster.secret"       # the cluster secret (created, mode 0600, if missing)
//! transfer_log = "xferlog"             # one xferlog line per upload and download
//!
//! [[users]]
//! name = "alice"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `ftpcalc hash-password`
//! home = "alice"                       # optional, relative to FOLDER
//! permissions = ["all"]                # or: list, download, upload, overwrite, delete, rename, mkdir, chtimes
//! services = ["*"]                     # SITE services this user may call
//!
//! [anonymous]                          # present: anonymous/ftp log in with any password
//! permissions = ["list", "download"]
//! services = ["ADD", "SUB", "MUL", "INC"]
//!
//! [tls]
//! cert = "server.pem"                  # or self_signed = true
//! key = "server.key"
//! required = true
//!
//! [limits]
//! max_connections = 10000
//! max_connections_per_ip = 50
//! max_transfers = 1000                 # data connections at once (read at start)
//! failed_logins = 5
//! lockout_seconds = 300
//! login_timeout_seconds = 30
//! idle_timeout_seconds = 600
//! data_timeout_seconds = 30
//!
//! [metrics]
//! listen = "127.0.0.1:9121"            # /metrics, /health, /ready
//!
//! [registry]                           # main servers sharing workers and download counts
//! endpoints = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]   # etcd
//!
//! [proxy]                              # behind HAProxy (send-proxy or send-proxy-v2)
//! protocol = true
//! ```

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::accounts::{Account, AnonymousPolicy, Permissions, ServiceGrant};
use crate::config::{Limits, ServerOptions, TlsConfig, TlsSource};

/// Largest configuration file read (a typo pointing at a huge file must not fill memory).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It cannot be read.
    #[error("cannot read the configuration {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// It is too large.
    #[error("the configuration {path:?} is over {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// It is not valid TOML, or has unknown keys or values of the wrong type.
    #[error("{path:?}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, with the line.
        message: String,
    },
    /// A value is of the right type but not acceptable.
    #[error("{path:?}: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The server's address.
    pub listen: Option<SocketAddr>,
    /// `FIRST-LAST`: ports for passive data connections.
    pub passive_ports: Option<String>,
    /// The address PASV announces (an IPv4 address or a DNS name).
    pub passive_host: Option<String>,
    /// Every upload no-clobber.
    pub no_clobber: Option<bool>,
    /// Where the cluster secret is kept.
    pub secret_file: Option<PathBuf>,
    /// The xferlog-format transfer log.
    pub transfer_log: Option<PathBuf>,
    #[serde(default)]
    users: Vec<UserSection>,
    anonymous: Option<AnonymousSection>,
    tls: Option<TlsSection>,
    limits: Option<LimitsSection>,
    /// The `[metrics]` section.
    pub metrics: Option<MetricsSection>,
    registry: Option<RegistrySection>,
    proxy: Option<ProxySection>,
    #[serde(skip)]
    folder: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSection {
    name: String,
    password: String,
    home: Option<PathBuf>,
    #[serde(default = "all")]
    permissions: Vec<String>,
    #[serde(default = "everything")]
    services: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousSection {
    home: Option<PathBuf>,
    #[serde(default = "read_only")]
    permissions: Vec<String>,
    #[serde(default = "everything")]
    services: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    self_signed: bool,
    #[serde(default)]
    required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_transfers: Option<usize>,
    failed_logins: Option<u32>,
    lockout_seconds: Option<u64>,
    login_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    data_timeout_seconds: Option<u64>,
}

/// `[metrics]`: the HTTP endpoint for Prometheus, `/health` and `/ready`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where it listens.
    pub listen: SocketAddr,
}

/// `[registry]`: the etcd cluster main servers share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrySection {
    endpoints: Vec<String>,
}

/// `[proxy]`: connections come through a proxy speaking the PROXY protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySection {
    protocol: bool,
}

fn all() -> Vec<String> {
    vec!["all".into()]
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

fn read_only() -> Vec<String> {
    vec!["list".into(), "download".into()]
}

impl ConfigFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let read = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge { path: path.to_path_buf() });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &folder)
    }

    /// Parses `text` (named `path` in messages), with relative paths relative to `folder`.
    pub fn parse(text: &str, path: &Path, folder: &Path) -> Result<ConfigFile, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })?;
        file.folder = folder.to_path_buf();
        // Check everything now, so that a bad file is refused before anything starts.
        file.apply(&mut ServerOptions::default(), path)?;
        Ok(file)
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.folder.join(path)
        }
    }

    /// The secret file's path, relative paths resolved.
    pub fn secret_path(&self) -> Option<PathBuf> {
        self.secret_file.as_deref().map(|path| self.resolve(path))
    }

    /// Lays the file's settings over `options` (the file is named `path` in messages).
    pub fn apply(&self, options: &mut ServerOptions, path: &Path) -> Result<(), ConfigError> {
        let value = |message: String| ConfigError::Value { path: path.to_path_buf(), message };
        if let Some(range) = &self.passive_ports {
            options.passive_ports =
                Some(parse_port_range(range).map_err(|reason| value(format!("passive_ports: {reason}")))?);
        }
        if let Some(host) = &self.passive_host {
            if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(value(format!("passive_host {host:?} is not an address or a host name")));
            }
            options.passive_host = Some(host.clone());
        }
        if let Some(no_clobber) = self.no_clobber {
            options.no_clobber = no_clobber;
        }
        let access = &mut options.access;
        access.users = self
            .users
            .iter()
            .map(|user| {
                let context = |message: String| value(format!("user {:?}: {message}", user.name));
                Ok(Account {
                    name: user.name.clone(),
                    password: user.password.clone(),
                    home: user.home.clone(),
                    permissions: Permissions::parse(&user.permissions).map_err(context)?,
                    services: ServiceGrant::parse(&user.services).map_err(context)?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        if let Some(anonymous) = &self.anonymous {
            let context = |message: String| value(format!("[anonymous]: {message}"));
            access.anonymous = Some(AnonymousPolicy {
                home: anonymous.home.clone(),
                permissions: Permissions::parse(&anonymous.permissions).map_err(context)?,
                services: ServiceGrant::parse(&anonymous.services).map_err(context)?,
            });
        }
        if let Some(tls) = &self.tls {
            let source = match (&tls.cert, &tls.key, tls.self_signed) {
                (Some(cert), Some(key), false) => {
                    TlsSource::Files { certificates: self.resolve(cert), key: self.resolve(key) }
                }
                (None, None, true) => TlsSource::SelfSigned,
                _ => return Err(value("[tls] needs cert and key, or self_signed = true (not both)".into())),
            };
            access.tls = Some(TlsConfig { source, required: tls.required });
        }
        if let Some(limits) = &self.limits {
            apply_limits(&mut access.limits, limits).map_err(|message| value(format!("[limits]: {message}")))?;
        }
        if let Some(metrics) = &self.metrics {
            options.metrics_listen = Some(metrics.listen);
        }
        if let Some(registry) = &self.registry {
            let endpoints: Vec<String> = registry
                .endpoints
                .iter()
                .map(|endpoint| endpoint.strip_prefix("etcd://").unwrap_or(endpoint).to_string())
                .collect();
            crate::cluster::shared::check_endpoints(&endpoints)
                .map_err(|error| value(format!("[registry]: {error}")))?;
            options.registry = endpoints;
        }
        if let Some(proxy) = &self.proxy {
            options.proxy_protocol = proxy.protocol;
        }
        if let Some(log) = &self.transfer_log {
            if log.as_os_str().is_empty() {
                return Err(value("transfer_log is empty".into()));
            }
            options.transfer_log = Some(self.resolve(log));
        }
        // The accounts are checked here too (hashes, homes), so that `--config` fails early.
        crate::accounts::Accounts::new(access.users.clone(), access.anonymous.clone())
            .map_err(|error| value(error.to_string()))?;
        Ok(())
    }
}

fn apply_limits(limits: &mut Limits, section: &LimitsSection) -> Result<(), String> {
    let positive = |name: &str, value: Option<u64>| match value {
        Some(0) => Err(format!("{name} must be at least 1")),
        other => Ok(other),
    };
    if let Some(max) = positive("max_connections", section.max_connections.map(|value| value as u64))? {
        limits.max_connections = max as usize;
    }
    if let Some(max) = positive("max_connections_per_ip", section.max_connections_per_ip.map(|value| value as u64))? {
        limits.max_connections_per_ip = max as usize;
    }
    if let Some(max) = positive("max_transfers", section.max_transfers.map(|value| value as u64))? {
        limits.max_transfers = max as usize;
    }
    if let Some(failures) = positive("failed_logins", section.failed_logins.map(u64::from))? {
        limits.failed_logins = failures as u32;
    }
    let seconds = |name: &str, value: Option<u64>| -> Result<Option<Duration>, String> {
        match positive(name, value)? {
            Some(seconds) if seconds > 31_536_000 => Err(format!("{name} is over a year")),
            other => Ok(other.map(Duration::from_secs)),
        }
    };
    if let Some(period) = seconds("lockout_seconds", section.lockout_seconds)? {
        limits.lockout = period;
    }
    if let Some(timeout) = seconds("login_timeout_seconds", section.login_timeout_seconds)? {
        limits.login_timeout = timeout;
    }
    if let Some(timeout) = seconds("idle_timeout_seconds", section.idle_timeout_seconds)? {
        limits.idle_timeout = timeout;
    }
    if let Some(timeout) = seconds("data_timeout_seconds", section.data_timeout_seconds)? {
        limits.data_timeout = timeout;
    }
    Ok(())
}

/// Parses `FIRST-LAST` into a port range (`1 <= FIRST <= LAST`).
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text.split_once('-').ok_or("expected FIRST-LAST")?;
    let first: u16 = first.trim().parse().map_err(|_| "FIRST is not a port")?;
    let last: u16 = last.trim().parse().map_err(|_| "LAST is not a port")?;
    if first == 0 || first > last {
        return Err("expected 1 <= FIRST <= LAST".into());
    }
    Ok(first..=last)
}

#[cfg(test)]
mod tests;
