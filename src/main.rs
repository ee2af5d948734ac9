//! The `ftpcalc` binary: parses the command line and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ftpcalc::config::{DEFAULT_GRACE_PERIOD, DEFAULT_WORKER_TIMEOUT};
use ftpcalc::{Cluster, ClusterConfig, WorkerSpec, DEFAULT_LISTEN};

/// A programmable FTP server: SITE services routed from a main server to worker servers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the main server NAME and its workers, all serving FOLDER.
    Server {
        /// The main server's name, e.g. SV0.
        name: String,
        /// The FTP folder every server serves (created if missing).
        folder: PathBuf,
        /// The main server's address.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// A worker as NAME=SERVICE[+SERVICE...][@HOST:PORT]; repeat for several. Without it:
        /// SV1=ADD, SV2=SUB, SV3=MUL, SV4=INC on the ports after the main server's.
        #[arg(long = "worker", value_name = "SPEC")]
        workers: Vec<WorkerSpec>,
        /// Start no worker (every service request then gets 451).
        #[arg(long, conflicts_with = "workers")]
        no_workers: bool,
        /// Seconds the main server waits for a worker's answer.
        #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WORKER_TIMEOUT.as_secs_f64())]
        worker_timeout: f64,
        /// Seconds a shutdown waits for open connections.
        #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_GRACE_PERIOD.as_secs_f64())]
        grace: f64,
        /// Apply no-clobber to every upload: STOR of an existing NAME.EXT stores NAME_copy1.EXT.
        #[arg(long)]
        no_clobber: bool,
        /// Port range for passive data connections, e.g. 40000-40999.
        #[arg(long, value_name = "FIRST-LAST", value_parser = parse_port_range)]
        passive_ports: Option<(u16, u16)>,
    },
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = text.split_once('-').ok_or("expected FIRST-LAST")?;
    let first: u16 = first.parse().map_err(|_| "FIRST is not a port")?;
    let last: u16 = last.parse().map_err(|_| "LAST is not a port")?;
    if first == 0 || first > last {
        return Err("expected 1 <= FIRST <= LAST".into());
    }
    Ok((first, last))
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{what} must be a non-negative number of seconds"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,libunftp=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server {
            name,
            folder,
            listen,
            workers,
            no_workers,
            worker_timeout,
            grace,
            no_clobber,
            passive_ports,
        } => {
            let mut config = ClusterConfig::new(name, folder).listen(listen);
            if no_workers {
                config.workers.clear();
            } else if !workers.is_empty() {
                config.workers = workers;
            }
            config.worker_timeout = seconds(worker_timeout, "--worker-timeout")?;
            config.grace_period = seconds(grace, "--grace")?;
            config.passive_ports = passive_ports.map(|(first, last)| first..=last);
            config.no_clobber = no_clobber;
            let cluster = Cluster::new(config).start().await?;
            print!("{}", cluster.table());
            shutdown_signal().await;
            eprintln!("ftpcalc: shutting down");
            cluster.shutdown().await;
            Ok(())
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
