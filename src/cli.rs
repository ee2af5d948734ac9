//! The command line of the `ftpcalc` binary: [`args`] (clap types), [`commands`] (arguments to
//! library configurations, console output), and here the dispatch, the runtime, logging and the
//! shutdown signal. Part of the binary, not of the library.

mod args;
mod commands;
mod serving;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use ftpcalc::client::{self, ClientConfig};
use ftpcalc::telemetry::line_writer::{LineWriter, LogLines, Report};
use ftpcalc::telemetry::text_format::{PlainFields, PlainText};

use args::{seconds, Cli, ClientArgs, Command, LogFormat};

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Client(args) => client_main(args),
        Command::Server(args) => with_runtime(args.serving.log_format, commands::serve(args)),
        Command::Worker(args) => with_runtime(args.serving.log_format, commands::work(args)),
        Command::Bench(args) => with_runtime(LogFormat::Text, commands::bench(args)),
        Command::HashPassword => hash_password(),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "ftpcalc", &mut script);
            say(&String::from_utf8_lossy(&script));
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            let mut page = Vec::new();
            let written = match &dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
                None => clap_mangen::Man::new(Cli::command()).render(&mut page),
            };
            match written {
                Ok(()) => {
                    say(&String::from_utf8_lossy(&page));
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("ftpcalc: cannot write the manual pages: {error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn client_main(args: ClientArgs) -> ExitCode {
    let durations = seconds(args.timeout, "--timeout")
        .and_then(|timeout| Ok((timeout, seconds(args.cache_fresh, "--cache-fresh")?)));
    let (timeout, cache_fresh) = match durations {
        Ok(durations) => durations,
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            return ExitCode::from(client::error::EXIT_USAGE_OR_CONNECTION);
        }
    };
    let cache_dir =
        if args.no_cache { None } else { args.cache_dir.clone().or_else(client::cache::FileCache::default_dir) };
    let ClientArgs { name, folder, server, password, verbose, command, tls, tls_ca, cache_size, .. } = args;
    let config = ClientConfig {
        name,
        password,
        tls,
        tls_ca,
        folder,
        server,
        verbose,
        timeout,
        cache_dir,
        cache_fresh,
        cache_max_bytes: cache_size.saturating_mul(1 << 20),
    };
    ExitCode::from(client::run(config, &command))
}

/// `ftpcalc hash-password`: the Argon2id PHC string of a password read from stdin.
fn hash_password() -> ExitCode {
    let hashed = serving::read_new_password()
        .and_then(|password| ftpcalc::accounts::password::hash(&password).map_err(|error| anyhow::anyhow!("{error}")));
    match hashed {
        Ok(phc) => {
            say(&format!("{phc}\n"));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Sets up logging and runs `job` on a tokio runtime; errors exit with 2.
fn with_runtime(format: LogFormat, job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let _flush_logs_at_exit = init_logging(format);
    // As nginx and vsftpd do: the soft descriptor limit up to the hard one, so that
    // `max_connections` is not cut short by a low default.
    match ftpcalc::access::gate::raise_descriptor_limit() {
        Ok(limit) => tracing::debug!(limit, "descriptor limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the descriptor limit"),
    }
    let outcome =
        tokio::runtime::Runtime::new().context("cannot start the runtime").and_then(|runtime| runtime.block_on(job));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs on stderr: `RUST_LOG` or, by default, our events at info and libunftp's (its struct
/// dumps) only from warn; colours only when stderr is a terminal. Lines are written in batches
/// by a thread of their own ([`LineWriter`]: bounded, then dropped and counted); the returned
/// guard writes the last ones at exit.
fn init_logging(format: LogFormat) -> LogGuard {
    use std::io::{IsTerminal, Write};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        ftpcalc::telemetry::libunftp_log::only_warnings();
        "info,libunftp=warn,unftp_sbe_fs=warn,rustls=error".into()
    });
    // The count of dropped lines is written straight to stderr: logging it would need room in
    // the very buffer that was full.
    let report = |report: Report| {
        if let Report::Dropped(lost) = report {
            let _ = writeln!(
                std::io::stderr(),
                "ftpcalc: {lost} log lines dropped: standard error was not read fast enough"
            );
        }
    };
    let writer = match LineWriter::spawn("ftpcalc-log", Box::new(std::io::stderr()), report) {
        Ok(writer) => Some(Arc::new(writer)),
        Err(error) => {
            eprintln!("ftpcalc: cannot start the log writer ({error}); logging on the caller's thread");
            None
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(LogLines(writer.clone()));
    match format {
        LogFormat::Text if std::io::stderr().is_terminal() => builder.with_ansi(true).init(),
        // Off a terminal (a file, a pipe, journald): the same lines, written for less.
        LogFormat::Text => builder.with_ansi(false).event_format(PlainText).fmt_fields(PlainFields).init(),
        // Every line one JSON object: the event's fields flattened, and the session span's
        // fields (`id`, `server`, `peer`, `user`) in "span".
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
    LogGuard(writer)
}

/// Writes the log lines still waiting when it is dropped (at exit).
struct LogGuard(Option<Arc<LineWriter>>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(writer) = &self.0 {
            writer.close();
        }
    }
}

/// Prints `text` on stdout; a closed stdout is not a reason to stop serving.
pub fn say(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// A future that completes on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so that a signal that arrives while the
/// servers start (a test that reads the table and stops the server at once) is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |handler: Option<tokio::signal::unix::Signal>| async move {
                match handler {
                    Some(mut handler) => {
                        handler.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
