//! Several main servers on one etcd cluster (issue 13): shared registry and download counts,
//! and faults under load (an etcd member, a worker, a main server behind HAProxy, all of etcd),
//! each with real processes: Debian's etcd-server and HAProxy, `ftpcalc` binaries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ftpcalc::cluster::control::Control;
use ftpcalc::ClusterSecret;

use crate::support::etcd::{arg, free_port, EtcdCluster, Haproxy};
use crate::support::{connect, eventually, run_stock, site, stock_client, Process, TestCluster};

const SECRET: &str = "shared-registry-secret-0123456789";
/// Worker TTL of the main servers in these tests, in seconds.
const TTL: u64 = 3;

/// An in-process main server `name` with no worker of its own, on the etcd cluster.
async fn main_on(etcd: &EtcdCluster, name: &str) -> TestCluster {
    let endpoints = etcd.endpoints();
    let name = name.to_string();
    TestCluster::start_config(
        move |mut config| {
            config.main_name = name;
            config.workers.clear();
            config.secret = Some(ClusterSecret::new(SECRET).expect("secret"));
            config.worker_ttl = Duration::from_secs(TTL);
            config.options.registry = endpoints;
            config.options.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            config
        },
        |cluster| cluster,
    )
    .await
}

/// `ftpcalc worker NAME --join MAIN --services SERVICES`, heartbeat 0.5 s, joined at once.
fn start_worker(name: &str, folder: &std::path::Path, main: SocketAddr, services: &str) -> Process {
    let (worker, joined) = spawn_worker(name, folder, main, services);
    assert!(joined.starts_with("joined"), "{joined}");
    worker
}

/// The same worker and the line saying whether it joined at once ("joined ...") or will retry
/// ("main server ... not reachable yet").
fn spawn_worker(name: &str, folder: &std::path::Path, main: SocketAddr, services: &str) -> (Process, String) {
    // Waiting for the worker's first lines blocks: the runtime's other worker takes over this
    // one's tasks meanwhile, among them the in-process main server the worker joins (blocked,
    // the join sometimes timed out: "main server ... not reachable yet").
    let (worker, _, joined) = tokio::task::block_in_place(|| {
        crate::support::start_worker_process(&[], (name, folder, services), main, SECRET, "127.0.0.1:0")
    });
    (worker, joined)
}

/// The `NAME=ADDRESS` pairs of `SITE LOOKUP service` on `main`; empty when none (or no answer).
async fn lookup(main: SocketAddr, service: &str) -> Vec<String> {
    let Ok(mut control) = Control::connect(main).await else { return Vec::new() };
    if control.login("tester", "secret").await.is_err() {
        return Vec::new();
    }
    match control.command(&format!("SITE LOOKUP {service}")).await {
        Ok(reply) if reply.code == 200 => reply.text().split_whitespace().skip(1).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Waits (at most `within`) until `SITE LOOKUP service` names exactly `expected` on every main
/// server of `mains`, and fails the test naming what one of them says otherwise.
async fn until_lookup(mains: &[SocketAddr], service: &str, expected: &[&str], within: Duration) {
    for &main in mains {
        let seen = eventually(within, async || names(&lookup(main, service).await) == expected).await;
        assert!(seen, "LOOKUP {service} on {main}: {:?}, expected {expected:?}", lookup(main, service).await);
    }
}

/// A 3-member etcd cluster and two main servers on it, SV0 and SV9; `None` without etcd.
async fn two_main_servers() -> Option<(EtcdCluster, TestCluster, TestCluster)> {
    let etcd = EtcdCluster::start(3).await?;
    let (sv0, sv9) = (main_on(&etcd, "SV0").await, main_on(&etcd, "SV9").await);
    Some((etcd, sv0, sv9))
}

/// Registers a worker `name` (at 127.0.0.1:9, offering ADD) on `main` with the cluster secret,
/// as a worker's join does; the reply, or `None` when the exchange failed.
async fn register_as(main: SocketAddr, name: &str) -> Option<ftpcalc::cluster::control::Reply> {
    let mut control = Control::connect(main).await.ok()?;
    control.login("tester", "secret").await.ok()?;
    let challenge = control.command("SITE CHALLENGE").await.ok()?.text();
    let request =
        ftpcalc::protocol::register_request(name, SocketAddr::from(([127, 0, 0, 1], 9)), &["ADD".to_string()]);
    let proof = ClusterSecret::new(SECRET).expect("secret").proof(&challenge, &request);
    control.command(&format!("SITE {request} {proof}")).await.ok()
}

fn names(places: &[String]) -> Vec<&str> {
    places.iter().filter_map(|place| place.split('=').next()).collect()
}

/// What a load run saw.
#[derive(Debug, Default)]
struct Tally {
    right: AtomicU64,
    /// `4xx` replies: "try again".
    transient: AtomicU64,
    /// The first few of them, for the failure message.
    transient_texts: Mutex<Vec<String>>,
    /// Connections lost or refused (the client reconnects).
    reconnects: AtomicU64,
    /// Anything else: must stay empty.
    wrong: Mutex<Vec<String>>,
}

/// `clients` connections sending `SITE ADD i j` to `targets` (spread over them, reconnecting
/// when a connection fails) for `duration`; every answer is checked.
async fn load(targets: Vec<SocketAddr>, clients: usize, duration: Duration) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (tally, targets) = (tally.clone(), targets.clone());
        tasks.spawn(async move {
            let mut control: Option<Control> = None;
            let mut request = 0u64;
            while tokio::time::Instant::now() < deadline {
                if control.is_none() {
                    let target = targets[(client + request as usize) % targets.len()];
                    let connected = tokio::time::timeout(Duration::from_secs(2), async {
                        let mut control = Control::connect(target).await.ok()?;
                        control.login("tester", "secret").await.ok()?;
                        Some(control)
                    })
                    .await;
                    match connected {
                        Ok(Some(connected)) => control = Some(connected),
                        _ => {
                            tally.reconnects.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            request += 1;
                            continue;
                        }
                    }
                }
                request += 1;
                let (a, b) = (client as u64 * 1000 + request, request * 7);
                let connection = control.as_mut().expect("connected");
                let reply =
                    tokio::time::timeout(Duration::from_secs(5), connection.command(&format!("SITE ADD {a} {b}")))
                        .await;
                match reply {
                    Ok(Ok(reply)) if reply.code == 200 => {
                        let text = reply.text();
                        if text.split_whitespace().next() == Some((a + b).to_string().as_str()) {
                            tally.right.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tally.wrong.lock().expect("lock").push(format!("ADD {a} {b}: {text}"));
                        }
                    }
                    Ok(Ok(reply)) if (400..500).contains(&reply.code) => {
                        tally.transient.fetch_add(1, Ordering::Relaxed);
                        {
                            let mut texts = tally.transient_texts.lock().expect("lock");
                            if texts.len() < 5 {
                                texts.push(format!("{} {}", reply.code, reply.text()));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(Ok(reply)) => {
                        tally.wrong.lock().expect("lock").push(format!("ADD {a} {b}: {} {}", reply.code, reply.text()));
                    }
                    _ => {
                        tally.reconnects.fetch_add(1, Ordering::Relaxed);
                        control = None;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    tally
}

fn check(tally: &Tally, case: &str, most_transient: u64) {
    let wrong = tally.wrong.lock().expect("lock");
    let (right, transient) = (tally.right.load(Ordering::Relaxed), tally.transient.load(Ordering::Relaxed));
    eprintln!("{case}: {right} right, {transient} 4xx, {} reconnects", tally.reconnects.load(Ordering::Relaxed));
    assert!(wrong.is_empty(), "{case}: wrong answers {:?}", &wrong[..wrong.len().min(5)]);
    assert!(right > 100, "{case}: only {right} right answers");
    let texts = tally.transient_texts.lock().expect("lock");
    assert!(transient <= most_transient, "{case}: {transient} 4xx replies (at most {most_transient}), first {texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_main_servers_share_workers_lookups_and_exact_download_counts() {
    let Some((_etcd, sv0, sv9)) = two_main_servers().await else { return };
    let folder = tempfile::tempdir().expect("temporary folder");
    let _w1 = start_worker("W1", folder.path(), sv0.main(), "ADD");
    let _w2 = start_worker("W2", folder.path(), sv9.main(), "ADD,MUL");
    let _w3 = start_worker("W3", folder.path(), sv0.main(), "SUB");
    let mains = [sv0.main(), sv9.main()];
    until_lookup(&mains, "ADD", &["W1", "W2"], Duration::from_secs(5)).await;
    until_lookup(&mains, "SUB", &["W3"], Duration::from_secs(1)).await;
    until_lookup(&mains, "MUL", &["W2"], Duration::from_secs(1)).await;
    assert_eq!(lookup(sv0.main(), "ADD").await, lookup(sv9.main(), "ADD").await, "the same answer on both");
    // Each main server lists the other (its entry in etcd, renewed by itself), and no worker
    // may take a main server's name through either.
    for (main, other) in [(sv0.main(), "SV9"), (sv9.main(), "SV0")] {
        let listed = eventually(Duration::from_secs(5), async || {
            let mut ftp = connect(main).await;
            site(&mut ftp, "SERVERS").await.1.lines().any(|line| line.contains(other) && line.contains("main"))
        })
        .await;
        assert!(listed, "SITE SERVERS on {main} lists {other}");
        let reply = register_as(main, other).await.expect("an answer");
        assert!(reply.code == 550 && reply.text().contains("main server's name"), "{reply:?}");
    }
    for (main, service, expected) in [(sv0.main(), "MUL 6 7", "42"), (sv9.main(), "SUB 10 4", "6")] {
        let mut ftp = connect(main).await;
        let (code, text) = site(&mut ftp, service).await;
        assert_eq!((code, text.split_whitespace().next()), (200, Some(expected)), "{service}: {text}");
    }

    // 64 concurrent downloads of one file, half through each main server: exact totals on both.
    for cluster in [&sv0, &sv9] {
        cluster.write_file("seed.txt", b"the seed");
    }
    let mut downloads = tokio::task::JoinSet::new();
    for index in 0..64 {
        let main = if index % 2 == 0 { sv0.main() } else { sv9.main() };
        downloads.spawn(async move {
            let mut ftp = connect(main).await;
            let data = crate::support::download(&mut ftp, "seed.txt").await;
            assert_eq!(data, b"the seed");
        });
    }
    while let Some(done) = downloads.join_next().await {
        done.expect("download");
    }
    for main in [sv0.main(), sv9.main()] {
        let mut ftp = connect(main).await;
        assert_eq!(site(&mut ftp, "STATS seed.txt").await, (200, "/seed.txt 64".to_string()), "on {main}");
        let (code, listing) = site(&mut ftp, "STATS").await;
        assert!(code == 200 && listing.contains("/seed.txt 64"), "{listing}");
    }
    // Each download took one count of the cluster's: the log lines of both carry 1..=64 once each.
    let mut counts: Vec<u64> = [&sv0, &sv9]
        .iter()
        .flat_map(|cluster| cluster.download_log.lock().expect("lock").clone())
        .map(|line| line.rsplit('|').next().and_then(|count| count.parse().ok()).expect("a count"))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=64).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_an_etcd_member_under_load_costs_no_wrong_answer() {
    let Some((mut etcd, sv0, sv9)) = two_main_servers().await else { return };
    let folder = tempfile::tempdir().expect("temporary folder");
    let _w1 = start_worker("W1", folder.path(), sv0.main(), "ADD");
    let _w2 = start_worker("W2", folder.path(), sv9.main(), "ADD");
    until_lookup(&[sv0.main(), sv9.main()], "ADD", &["W1", "W2"], Duration::from_secs(5)).await;
    let running = tokio::spawn(load(vec![sv0.main(), sv9.main()], 32, Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.kill(0);
    let tally = running.await.expect("load");
    check(&tally, "kill -9 of an etcd member", 0);
    // The two members left keep the quorum: registrations and leases go on. W3's first attempt
    // may still meet the election that follows the kill, or a client still trying the dead
    // member (refused with a 4xx, or over its 5 s bound on a loaded machine): its heartbeat
    // then registers it, as it would anywhere.
    let (_w3, joined) = spawn_worker("W3", folder.path(), sv9.main(), "ADD");
    assert!(joined.starts_with("joined") || joined.contains("not reachable yet"), "{joined}");
    until_lookup(&[sv0.main(), sv9.main()], "ADD", &["W1", "W2", "W3"], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_leaves_every_main_server_within_its_ttl() {
    let Some((_etcd, sv0, sv9)) = two_main_servers().await else { return };
    let folder = tempfile::tempdir().expect("temporary folder");
    let _w1 = start_worker("W1", folder.path(), sv0.main(), "ADD");
    let mut w2 = start_worker("W2", folder.path(), sv9.main(), "ADD");
    until_lookup(&[sv0.main(), sv9.main()], "ADD", &["W1", "W2"], Duration::from_secs(5)).await;
    let running = tokio::spawn(load(vec![sv0.main(), sv9.main()], 32, Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    w2.kill();
    let killed = tokio::time::Instant::now();
    let tally = running.await.expect("load");
    // Requests in flight on W2 are retried on W1 (ADD is idempotent): no 4xx is needed.
    check(&tally, "kill -9 of a worker", 32);
    until_lookup(&[sv0.main(), sv9.main()], "ADD", &["W1"], Duration::from_secs(TTL + 3)).await;
    let waited = killed.elapsed();
    assert!(waited < Duration::from_secs(TTL + 4), "W2 left after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_of_etcd_stopped_main_servers_route_refuse_registrations_and_catch_up() {
    let Some((mut etcd, sv0, sv9)) = two_main_servers().await else { return };
    let folder = tempfile::tempdir().expect("temporary folder");
    let _w1 = start_worker("W1", folder.path(), sv0.main(), "ADD");
    until_lookup(&[sv0.main(), sv9.main()], "ADD", &["W1"], Duration::from_secs(5)).await;
    let running = tokio::spawn(load(vec![sv0.main(), sv9.main()], 32, Duration::from_secs(6)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.kill_all();
    // Registrations are refused with a 4xx while etcd is away; the worker keeps its place.
    let refused = eventually(Duration::from_secs(8), async || {
        matches!(register_as(sv0.main(), "W9").await, Some(reply) if reply.code == 451 && reply.text().contains("shared registry is unreachable"))
    })
    .await;
    assert!(refused, "a registration while etcd is down is refused with 451");
    let endpoint = sv9.cluster.metrics_address().expect("metrics endpoint");
    let (code, body) = ready(endpoint).await;
    assert!(code == 503 && body.contains("unreachable: routing with the last registry seen"), "/ready: {code} {body}");
    let (_, metrics) = crate::operations::http_get(endpoint, &crate::operations::get("/metrics")).await;
    assert!(metrics.contains("\nftpcalc_registry_shared_in_step 0\n"), "{metrics}");
    // A download during the outage is served without waiting for etcd and counted on SV0;
    // it is added to the shared count once etcd is back.
    let sv0_endpoint = sv0.cluster.metrics_address().expect("metrics endpoint");
    assert!(eventually(Duration::from_secs(5), async || ready(sv0_endpoint).await.0 == 503).await);
    sv0.write_file("seed.txt", b"the seed");
    let mut ftp = connect(sv0.main()).await;
    assert_eq!(crate::support::download(&mut ftp, "seed.txt").await, b"the seed");
    assert_eq!(site(&mut ftp, "STATS seed.txt").await, (200, "/seed.txt 1".to_string()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = running.await.expect("load");
    check(&tally, "all of etcd stopped", 0);
    assert_eq!(names(&lookup(sv9.main(), "ADD").await), ["W1"], "the last registry seen");

    etcd.restart_stopped().await;
    let _w2 = start_worker("W2", folder.path(), sv9.main(), "ADD");
    until_lookup(&[sv0.main(), sv9.main()], "ADD", &["W1", "W2"], Duration::from_secs(10)).await;
    // Ready again as far as etcd goes (the catalogue's other services have no worker here),
    // once SV9's watch is back: it retries with a pause of up to 2 s, and W2's registration
    // through SV9 can come first (a CI run read /ready in between).
    let back = eventually(Duration::from_secs(10), async || !ready(endpoint).await.1.contains("unreachable")).await;
    let (_, body) = ready(endpoint).await;
    assert!(back && body.contains("no live worker for INC, MUL, SUB"), "/ready: {body}");
    let (_, metrics) = crate::operations::http_get(endpoint, &crate::operations::get("/metrics")).await;
    assert!(metrics.contains("\nftpcalc_registry_shared_in_step 1\n"), "{metrics}");
    for (main, why) in [(sv0.main(), "SV0 adds what it counted"), (sv9.main(), "and SV9 sees it")] {
        // SV9 learns the count from etcd's watch: soon, not at once.
        let counted = eventually(Duration::from_secs(10), async || {
            let mut ftp = connect(main).await;
            site(&mut ftp, "STATS seed.txt").await == (200, "/seed.txt 1".to_string())
        })
        .await;
        assert!(counted, "{why}");
    }
}

async fn ready(endpoint: SocketAddr) -> (u16, String) {
    crate::operations::http_get(endpoint, &crate::operations::get("/ready")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_written_to_etcd_is_skipped_and_the_cluster_goes_on() {
    let Some((etcd, sv0, sv9)) = two_main_servers().await else { return };
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|endpoint| format!("http://{endpoint}")).collect();
    let mut client = etcd_client::Client::connect(&endpoints, None).await.expect("etcd client");
    let huge = format!("worker 127.0.0.1:9 {}", vec!["ADD"; 2000].join(","));
    let garbage: [(&str, &[u8]); 7] = [
        ("/ftpcalc/servers/bad name", b"worker 127.0.0.1:9 ADD"),
        ("/ftpcalc/servers/W7", b"nonsense"),
        ("/ftpcalc/servers/W8", huge.as_bytes()),
        ("/ftpcalc/servers/W9", b"worker 127.0.0.1:9 ADD;DELE"),
        ("/ftpcalc/servers/W10", &[0xff, 0xfe, 0x00]),
        ("/ftpcalc/servers/SV0", b"worker 127.0.0.1:9 ADD"),
        ("/ftpcalc/downloads/seed.txt", b"not a number"),
    ];
    for (key, value) in garbage {
        client.put(key, value, None).await.expect("put garbage");
    }
    let folder = tempfile::tempdir().expect("temporary folder");
    let _w1 = start_worker("W1", folder.path(), sv9.main(), "ADD");
    // Only the real worker is listed: SV0's own name in etcd never replaces SV0 on SV0, and SV0
    // writes its own entry back within its renewal beat, so SV9 soon sees SV0 as a main server
    // again (requests SV9 sends to the bogus entry meanwhile fail over to W1).
    until_lookup(&[sv0.main()], "ADD", &["W1"], Duration::from_secs(5)).await;
    until_lookup(&[sv9.main()], "ADD", &["W1"], Duration::from_secs(8)).await;
    let mut on_sv9 = connect(sv9.main()).await;
    for _ in 0..4 {
        let (code, text) = site(&mut on_sv9, "ADD 2 3").await;
        assert_eq!((code, text.as_str()), (200, "5 (computed by W1)"), "SV9 fails over from the dead entry");
    }
    let mut ftp = connect(sv0.main()).await;
    let (code, text) = site(&mut ftp, "ADD 2 3").await;
    assert_eq!((code, text.split_whitespace().next()), (200, Some("5")), "{text}");
    let (code, servers) = site(&mut ftp, "SERVERS").await;
    assert!(code == 200 && servers.contains("SV0") && !servers.contains("W7"), "{servers}");
    // A counter holding garbage counts from zero again.
    sv0.write_file("seed.txt", b"seed");
    assert_eq!(crate::support::download(&mut ftp, "seed.txt").await, b"seed");
    assert_eq!(site(&mut ftp, "STATS seed.txt").await, (200, "/seed.txt 1".to_string()));
}

/// `ftpcalc server NAME --no-workers --registry … --proxy-protocol` with its own passive range
/// announced at `passive_host`, its log written to `log`; returns it and its address.
fn start_main_process(
    name: &str,
    folder: &std::path::Path,
    etcd: &EtcdCluster,
    passive: &str,
    log: &std::path::Path,
) -> (Process, SocketAddr) {
    let url = etcd.url();
    let ttl = TTL.to_string();
    let main = Process::start_logging(
        &[
            "server",
            name,
            arg(folder),
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
            "--secret",
            SECRET,
            "--worker-ttl",
            &ttl,
            "--grace",
            "0.5",
            "--registry",
            &url,
            "--proxy-protocol",
            "--passive-ports",
            passive,
            "--passive-host",
            "127.0.0.2",
            "--max-connections-per-ip",
            "1000",
        ],
        log,
    );
    let address = main.address_from_table();
    (main, address)
}

fn port_range(first: u16) -> String {
    format!("{first}-{}", first + 9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_clients_keep_their_address_and_survive_a_killed_main_server() {
    let Some(etcd) = EtcdCluster::start(3).await else { return };
    let folder = tempfile::tempdir().expect("temporary folder");
    std::fs::write(folder.path().join("seed.txt"), b"through the proxy").expect("write");
    // Passive ports: one range per main server, forwarded by HAProxy to that main server.
    let (first_a, first_b) = (free_port() / 20 * 10, free_port() / 20 * 10 + 10);
    let (first_a, first_b) = (first_a.max(20000), first_b.max(20010));
    let logs = tempfile::tempdir().expect("temporary folder");
    let log = |name: &str| logs.path().join(format!("{name}.log"));
    let (mut sv0, sv0_address) = start_main_process("SV0", folder.path(), &etcd, &port_range(first_a), &log("SV0"));
    let (sv9, sv9_address) = start_main_process("SV9", folder.path(), &etcd, &port_range(first_b), &log("SV9"));
    let front = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let passive = [(port_range(first_a), sv0_address), (port_range(first_b), sv9_address)];
    let Some(proxy) = Haproxy::start(front, &[sv0_address, sv9_address], &passive).await else { return };
    let _w1 = start_worker("W1", folder.path(), proxy.address, "ADD");

    // A client from 127.0.0.3: the seed's log line names it, not the proxy (127.0.0.1).
    let (mut raw, greeting) = crate::support::RawFtp::connect_from([127, 0, 0, 3].into(), proxy.address).await;
    assert_eq!(greeting.0, 220, "{}", greeting.1);
    assert_eq!(raw.log_in_as("tester", "secret").await.0, 230);
    raw.command("TYPE I").await;
    let mut data = raw.passive(proxy.address).await;
    raw.send("RETR seed.txt").await;
    let mut received = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut data, &mut received).await.expect("read the data connection");
    assert_eq!(received, b"through the proxy");
    assert_eq!(raw.reply().await.0, 150);
    assert_eq!(raw.reply().await.0, 226);
    let seen = eventually(Duration::from_secs(5), async || {
        [&sv0, &sv9].iter().any(|main| main.lines.try_iter().any(|line| line.starts_with("/seed.txt|127.0.0.3|")))
    })
    .await;
    assert!(seen, "the seed's log line names the client's real address 127.0.0.3");

    // Stock clients through HAProxy, passive mode (curl: EPSV; lftp: PASV with the announced host).
    if let (Some(curl), Some(lftp)) = (stock_client("curl"), stock_client("lftp")) {
        let url = format!("ftp://tester:secret@{}/seed.txt", proxy.address);
        for _ in 0..4 {
            let (ok, out, err) = run_stock(&curl, &["-sS", "--max-time", "20", &url]).await;
            assert!(ok && out == "through the proxy", "curl: {out} {err}");
        }
        let script = format!(
            "set net:max-retries 1; set net:timeout 10; set ftp:prefer-epsv no; open -u tester,secret {}:{}; cat seed.txt",
            proxy.address.ip(),
            proxy.address.port()
        );
        let (ok, out, err) = run_stock(&lftp, &["-c", &script]).await;
        assert!(ok && out == "through the proxy", "lftp: {out} {err}");
    }

    // kill -9 of one main server under load: clients reconnecting through HAProxy go on.
    let running = tokio::spawn(load(vec![proxy.address], 32, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    sv0.kill();
    let tally = running.await.expect("load");
    if tally.transient.load(Ordering::Relaxed) > 0 {
        // Why a main server answered 4xx: its warnings, registrations and etcd events.
        for main in ["SV0", "SV9"] {
            let log = std::fs::read_to_string(log(main)).unwrap_or_default();
            let notable: Vec<&str> = log
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains("etcd") || line.contains("worker registered"))
                .take(60)
                .collect();
            eprintln!("{main}'s log:\n{}", notable.join("\n"));
        }
    }
    check(&tally, "kill -9 of a main server behind HAProxy", 0);
    assert!(tally.reconnects.load(Ordering::Relaxed) > 0, "some clients were on the killed main server");
    drop(sv9);
}
