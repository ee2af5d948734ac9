//! What `server` and `worker` share on the command line: the configuration file laid over the
//! defaults and the flags laid over the file, the cluster secret and its file, and the lines
//! of the start-up banner about access (open mode, FTPS).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ftpcalc::access::AccessPolicy;
use ftpcalc::config::file::{parse_port_range, ConfigFile};
use ftpcalc::{ClusterSecret, ServerOptions, TlsConfig, TlsSource};

use crate::cli::args::{seconds, Serving};

/// The server options from the configuration file (if any) and the flags, and the file.
pub fn options(serving: &Serving) -> anyhow::Result<(ServerOptions, Option<ConfigFile>)> {
    let mut options = ServerOptions::default();
    let file = match &serving.config {
        Some(path) => {
            let file = ConfigFile::load(path)?;
            file.apply(&mut options, path)?;
            Some(file)
        }
        None => None,
    };
    if let Some(range) = &serving.passive_ports {
        options.passive_ports =
            Some(parse_port_range(range).map_err(|reason| anyhow::anyhow!("--passive-ports: {reason}"))?);
    }
    if let Some(host) = &serving.passive_host {
        options.passive_host = Some(host.clone());
    }
    let access = &mut options.access;
    let required = serving.tls_required || access.tls.as_ref().is_some_and(|tls| tls.required);
    if let (Some(certificates), Some(key)) = (&serving.tls_cert, &serving.tls_key) {
        access.tls = Some(TlsConfig {
            source: TlsSource::Files { certificates: certificates.clone(), key: key.clone() },
            required,
        });
    } else if serving.tls_self_signed {
        access.tls = Some(TlsConfig { source: TlsSource::SelfSigned, required });
    } else if let Some(tls) = &mut access.tls {
        tls.required = required;
    } else if serving.tls_required {
        bail!("--tls-required needs a certificate: --tls-cert and --tls-key, --tls-self-signed, or [tls] in --config");
    }
    if let Some(max) = serving.max_connections {
        access.limits.max_connections = max.max(1);
    }
    if let Some(max) = serving.max_connections_per_ip {
        access.limits.max_connections_per_ip = max.max(1);
    }
    if let Some(address) = serving.metrics {
        options.metrics_listen = Some(address);
    }
    if let Some(path) = &serving.transfer_log {
        options.transfer_log = Some(path.clone());
    }
    if serving.proxy_protocol {
        options.proxy_protocol = true;
    }
    options.grace_period = seconds(serving.grace, "--grace")?;
    // The process exits after the shutdown: sessions need no second handle to be closed.
    options.close_on_stop = false;
    Ok((options, file))
}

/// The cluster secret: `--secret` (or `$FTPCALC_SECRET`), else the one kept in the secret
/// file (`--secret-file`, `secret_file` in the configuration, or the default file for this
/// server's name), made there if missing. Returns it with the file it came from.
pub fn secret(
    name: &str,
    given: Option<&str>,
    serving: &Serving,
    file: Option<&ConfigFile>,
) -> anyhow::Result<(ClusterSecret, Option<PathBuf>)> {
    if let Some(text) = given {
        return Ok((ClusterSecret::new(text)?, None));
    }
    let path = serving
        .secret_file
        .clone()
        .or_else(|| file.and_then(ConfigFile::secret_path))
        .unwrap_or_else(|| default_secret_file(name));
    let (secret, _created) =
        ClusterSecret::load_or_create(&path).with_context(|| format!("cluster secret file {}", path.display()))?;
    Ok((secret, Some(path)))
}

/// `$XDG_STATE_HOME/ftpcalc/NAME.secret`, else `~/.local/state/ftpcalc/NAME.secret`, else
/// `./ftpcalc-NAME.secret`.
fn default_secret_file(name: &str) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")));
    match state {
        Some(state) => state.join("ftpcalc").join(format!("{name}.secret")),
        None => PathBuf::from(format!("ftpcalc-{name}.secret")),
    }
}

/// The banner's lines about access: open mode, FTPS and its certificate's fingerprint.
pub fn banner(policy: &AccessPolicy) -> String {
    let mut lines = String::new();
    if policy.accounts.is_open() {
        lines.push_str("open mode: no accounts are configured, so only clients on this machine may log in (add [[users]] or [anonymous] with --config FILE)\n");
    }
    if let Some(tls) = &policy.tls {
        let required = if tls.required { ", required for clients not on this machine" } else { "" };
        lines.push_str(&format!("FTPS: AUTH TLS{required}; certificate SHA-256 {}\n", tls.identity.fingerprint));
    }
    lines
}

/// Reads a password from standard input: twice without echo on a terminal, else one line.
pub fn read_new_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("an empty password would let anyone in: give one");
    }
    Ok(password)
}

/// Waits for `stop`. On each `SIGHUP` reads the configuration file again, lays the flags over
/// it as at start, and hands the access part (users, anonymous, TLS, limits) to `reload`; a
/// file that does not parse or check, or a policy that cannot be built, is refused with a
/// message and the running configuration stays.
/// `hangups` comes from [`hangups`], installed before the servers start so that no `SIGHUP`
/// kills the process once it has said it is up.
pub async fn serve_until_stopped<F, R>(
    stop: impl std::future::Future<Output = ()>,
    mut hangups: Option<tokio::signal::unix::Signal>,
    serving: &Serving,
    reload: F,
) where
    F: Fn(ftpcalc::config::AccessConfig) -> R,
    R: std::future::Future<Output = Result<(), ftpcalc::access::AccessError>>,
{
    tokio::pin!(stop);
    loop {
        let hangup = async {
            match &mut hangups {
                Some(hangups) => hangups.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            _ = hangup => {}
        }
        let Some(path) = &serving.config else {
            tracing::warn!("SIGHUP: no configuration file to reload (start with --config FILE)");
            continue;
        };
        match options(serving) {
            Err(error) => {
                tracing::error!(config = %path.display(), "SIGHUP: configuration refused, the running one stays: {error:#}")
            }
            Ok((options, _)) => match reload(options.access).await {
                Ok(()) => tracing::info!(config = %path.display(), "SIGHUP: configuration reloaded for new sessions"),
                Err(error) => {
                    tracing::error!(config = %path.display(), %error, "SIGHUP: configuration refused, the running one stays")
                }
            },
        }
    }
}

/// The `SIGHUP` handler, installed now.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
