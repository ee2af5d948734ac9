//! What each subcommand does: turn its arguments into the library's configuration, run it,
//! and print what the user needs on stdout.

use anyhow::Context;
use ftpcalc::{Cluster, ClusterConfig, Worker, WorkerConfig, DEFAULT_LISTEN};

use crate::cli::args::{seconds, BenchArgs, BenchMode, ServerArgs, WorkerArgs};
use crate::cli::serving;
use crate::cli::{say, shutdown_signal};

pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let (options, file) = serving::options(&args.serving)?;
    let listen = args.listen.or(file.as_ref().and_then(|file| file.listen)).unwrap_or(DEFAULT_LISTEN.parse()?);
    let mut config = ClusterConfig::new(args.name.clone(), args.folder).listen(listen);
    config.options = options;
    if args.no_clobber {
        config.options.no_clobber = true;
    }
    if args.no_workers {
        config.workers.clear();
    } else if !args.workers.is_empty() {
        config.workers = args.workers;
    }
    config.worker_timeout = seconds(args.worker_timeout, "--worker-timeout")?;
    config.worker_ttl = seconds(args.worker_ttl, "--worker-ttl")?;
    if let Some(registry) = &args.registry {
        config.options.registry = ftpcalc::cluster::shared::parse_endpoints(registry).context("--registry")?;
    }
    let (secret, secret_file) = serving::secret(&args.name, args.secret.as_deref(), &args.serving, file.as_ref())?;
    config.secret = Some(secret);
    let stop = shutdown_signal();
    let hangups = serving::hangups();
    let cluster_registry = config.options.registry.clone();
    let cluster = Cluster::new(config).start().await?;
    let mut console = cluster.table();
    console.push_str(&serving::banner(&cluster.access()));
    if let Some(path) = secret_file {
        console.push_str(&format!("cluster secret in {} (for workers: --secret-file)\n", path.display()));
    }
    if let Some(address) = cluster.metrics_address() {
        console.push_str(&format!("metrics on http://{address}/metrics (also /health, /ready)\n"));
    }
    if let [first, ..] = cluster_registry.as_slice() {
        console.push_str(&format!(
            "registry and download counts shared on etcd at {first}{}\n",
            if cluster_registry.len() > 1 { format!(" (+{} more)", cluster_registry.len() - 1) } else { String::new() }
        ));
    }
    say(&console);
    serving::serve_until_stopped(stop, hangups, &args.serving, |access| {
        let cluster = &cluster;
        async move { cluster.reload(&access).await }
    })
    .await;
    eprintln!("ftpcalc: shutting down");
    cluster.shutdown().await;
    Ok(())
}

pub async fn work(args: WorkerArgs) -> anyhow::Result<()> {
    let (options, file) = serving::options(&args.serving)?;
    if args.secret.is_none()
        && args.serving.secret_file.is_none()
        && file.as_ref().and_then(|file| file.secret_file.as_ref()).is_none()
    {
        anyhow::bail!("a worker needs the cluster secret: --secret, --secret-file, or secret_file in --config");
    }
    let (secret, _) = serving::secret(&args.name, args.secret.as_deref(), &args.serving, file.as_ref())?;
    let services: Vec<&str> = args.services.iter().map(String::as_str).collect();
    let mut config = WorkerConfig::new(&args.name, args.folder, args.join, &services, secret);
    config.options = options;
    config.listen = args.listen.or(file.as_ref().and_then(|file| file.listen)).unwrap_or(config.listen);
    config.advertise = args.advertise;
    config.heartbeat = seconds(args.heartbeat, "--heartbeat")?;
    let heartbeat = config.heartbeat;
    let stop = shutdown_signal();
    let hangups = serving::hangups();
    let worker = Worker::new(config).start().await?;
    let identity = worker.identity();
    let mut console = format!("{:<8} {:<22} {:<7} SERVICES\n", "NAME", "ADDRESS", "ROLE");
    let address = identity.address.to_string();
    console.push_str(&format!("{:<8} {address:<22} {:<7} {}\n", identity.name, "worker", identity.services.join(",")));
    console.push_str(&match worker.main() {
        Some(main) => format!("joined {} at {}\n", main.name, main.address),
        None => format!("main server at {} not reachable yet; retrying every {heartbeat:?}\n", args.join),
    });
    console.push_str(&serving::banner(&worker.access()));
    if let Some(address) = worker.metrics_address() {
        console.push_str(&format!("metrics on http://{address}/metrics (also /health, /ready)\n"));
    }
    say(&console);
    serving::serve_until_stopped(stop, hangups, &args.serving, |access| {
        let worker = &worker;
        async move { worker.reload(&access).await }
    })
    .await;
    eprintln!("ftpcalc: shutting down");
    worker.shutdown().await;
    Ok(())
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let address = tokio::net::lookup_host(&args.server)
        .await?
        .next()
        .with_context(|| format!("{} has no address", args.server))?;
    let target = ftpcalc::bench::Target {
        address,
        user: args.user,
        password: args.password,
        timeout: seconds(args.timeout, "--timeout")?,
    };
    let report = match args.mode {
        BenchMode::Cmd { command, connections, duration, requests } => {
            let report =
                ftpcalc::bench::commands(&target, &command, connections, seconds(duration, "--duration")?, requests)
                    .await?;
            format!(
                "command {command:?}: {connections} connections, {:.2} s\nrequests {}, errors {}, {:.0} ops/s\nlatency p50 {} us, p99 {} us, max {} us\n",
                report.elapsed.as_secs_f64(),
                report.requests,
                report.errors,
                report.rate(),
                report.p50.as_micros(),
                report.p99.as_micros(),
                report.max.as_micros()
            )
        }
        BenchMode::Idle { sessions, concurrency, hold, pid } => {
            let report =
                ftpcalc::bench::idle_sessions(&target, sessions, concurrency, seconds(hold, "--hold")?, pid).await;
            let memory = match (report.rss_kib, report.kib_per_session()) {
                (Some((before, holding)), Some(per_session)) => {
                    format!("server RSS {before} KiB before, {holding} KiB holding, {per_session:.1} KiB per session\n")
                }
                _ => String::new(),
            };
            format!(
                "idle: {} of {sessions} sessions logged in, {} failed, opened in {:.2} s\n{memory}",
                report.logged_in,
                report.failed,
                report.elapsed.as_secs_f64()
            )
        }
        BenchMode::Retr { path } => transfer_report("retr", &ftpcalc::bench::download(&target, &path).await?),
        BenchMode::Stor { path, mib, keep } => {
            transfer_report("stor", &ftpcalc::bench::upload(&target, &path, mib << 20, keep).await?)
        }
        BenchMode::Small { path, max_files, duration } => transfer_report(
            "small",
            &ftpcalc::bench::small_files(&target, &path, max_files, seconds(duration, "--duration")?).await?,
        ),
    };
    say(&report);
    Ok(())
}

fn transfer_report(mode: &str, report: &ftpcalc::bench::TransferReport) -> String {
    format!(
        "{mode}: files {}, bytes {}, {:.3} s\n{:.1} MB/s, {:.0} files/s\n",
        report.files,
        report.bytes,
        report.elapsed.as_secs_f64(),
        report.megabytes_per_second(),
        report.files_per_second()
    )
}
