//! Operating a server (issue 12): the metrics endpoint after known traffic, `/ready` as workers
//! come and go, the endpoint under bad requests, the transfer log's fields.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ftpcalc::accounts::{AnonymousPolicy, Permissions, ServiceGrant};
use ftpcalc::{ClusterSecret, Worker, WorkerConfig, WorkerSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{connect_as, download, eventually, loopback, run_stock, site, stock_client, RawFtp, TestCluster};

/// `GET path` over a fresh connection: the status code and the body.
pub async fn http_get(address: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect to the endpoint");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("a response within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (code, body)
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn anonymous_reader() -> AnonymousPolicy {
    AnonymousPolicy {
        home: None,
        permissions: Permissions::parse(&["list".into(), "download".into()]).expect("permissions"),
        services: ServiceGrant::parse(&["*".into()]).expect("services"),
    }
}

async fn scrape(address: SocketAddr) -> String {
    let (code, body) = http_get(address, &get("/metrics")).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_routed_requests_downloads_failed_logins_and_refusals_exactly() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.metrics_listen = Some(loopback(0));
            config.options.access.anonymous = Some(anonymous_reader());
            config.options.access.limits.max_connections_per_ip = 3;
            config
        },
        |cluster| cluster,
    )
    .await;
    let endpoint = cluster.cluster.metrics_address().expect("an endpoint");
    let body = b"twelve bytes";
    cluster.write_file("data.bin", body);
    let main = cluster.main();

    // 2 clients at once, 10 routed ADDs each, every answer checked; 3 downloads.
    let clients = (0..2).map(|client| {
        tokio::spawn(async move {
            let mut ftp = connect_as(main, "anonymous", "guest@example.com").await;
            for index in 0..10 {
                let (code, text) = site(&mut ftp, &format!("ADD {index} {client}")).await;
                assert_eq!((code, text), (200, format!("{} (computed by SV1)", index + client)));
            }
            if client == 0 {
                for _ in 0..3 {
                    assert_eq!(download(&mut ftp, "data.bin").await, b"twelve bytes");
                }
            }
            let _ = ftp.quit().await;
        })
    });
    for client in clients {
        client.await.expect("client");
    }
    let (mut raw, _) = RawFtp::connect(main).await;
    assert_eq!(raw.command("USER mallory").await.0, 331);
    assert_eq!(raw.command("PASS wrong").await.0, 530);
    drop(raw);
    // Wait for the server to see every connection closed, then fill the per-address limit.
    let closed = eventually(Duration::from_secs(10), async || {
        sample(&scrape(endpoint).await, "ftpcalc_connections_open{server=\"SV0\"}") == Some(0.0)
    })
    .await;
    assert!(closed, "the open-connection gauge went back to 0");
    let mut held = Vec::new();
    for _ in 0..3 {
        let (raw, greeting) = RawFtp::connect(main).await;
        assert_eq!(greeting.0, 220);
        held.push(raw);
    }
    let (_, refused) = RawFtp::connect(main).await;
    assert_eq!(refused.0, 421, "{}", refused.1);

    let text = scrape(endpoint).await;
    let expected = [
        ("ftpcalc_site_requests_total{result=\"ok\",service=\"ADD\",worker=\"SV1\"}", 20.0),
        ("ftpcalc_site_request_duration_seconds_count{service=\"ADD\",worker=\"SV1\"}", 20.0),
        ("ftpcalc_transfers_total{direction=\"download\"}", 3.0),
        ("ftpcalc_transfer_bytes_total{direction=\"download\"}", 3.0 * body.len() as f64),
        ("ftpcalc_transfer_duration_seconds_count{direction=\"download\"}", 3.0),
        ("ftpcalc_logins_total{result=\"ok\",server=\"SV0\"}", 2.0),
        ("ftpcalc_logins_total{result=\"failed\",server=\"SV0\"}", 1.0),
        ("ftpcalc_connections_accepted_total{server=\"SV0\"}", 6.0),
        ("ftpcalc_connections_refused_total{reason=\"max_connections_per_ip\",server=\"SV0\"}", 1.0),
        ("ftpcalc_connections_open{server=\"SV0\"}", 3.0),
        ("ftpcalc_registry_servers", 5.0),
        ("ftpcalc_worker_up{worker=\"SV1\"}", 1.0),
        ("ftpcalc_worker_up{worker=\"SV4\"}", 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    // (Every transfer series shows from the start, at zero until a transfer counts in it.)
    assert_eq!(sample(&text, "ftpcalc_transfer_failures_total{direction=\"download\"}"), Some(0.0), "{text}");
    // The histogram's buckets are cumulative and end with +Inf at the count.
    let inf = "ftpcalc_site_request_duration_seconds_bucket{service=\"ADD\",worker=\"SV1\",le=\"+Inf\"}";
    assert_eq!(sample(&text, inf), Some(20.0), "{text}");

    let Some(promtool) = stock_client("promtool") else { return };
    let folder = tempfile::tempdir().expect("folder");
    let file = folder.path().join("metrics.txt");
    std::fs::write(&file, &text).expect("write");
    let script = format!("promtool check metrics < {}", file.display());
    let (ok, stdout, stderr) = run_stock(Path::new("/bin/sh"), &["-c", &script]).await;
    assert!(ok, "promtool ({}) refused the exposition:\n{stdout}{stderr}", promtool.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_false_when_the_last_worker_of_a_service_is_gone_and_true_when_one_joins() {
    let secret = ClusterSecret::new("operations-secret-0123").expect("long enough");
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.metrics_listen = Some(loopback(0));
            config.secret = Some(secret.clone());
            config.worker_ttl = Duration::from_secs(2);
            // Every service but ADD has a worker in the process; ADD's joins from outside.
            config.workers(vec![
                WorkerSpec::new("SV2", &["SUB"]),
                WorkerSpec::new("SV3", &["MUL"]),
                WorkerSpec::new("SV4", &["INC"]),
            ])
        },
        |cluster| cluster,
    )
    .await;
    let endpoint = cluster.cluster.metrics_address().expect("an endpoint");
    assert_eq!(http_get(endpoint, &get("/health")).await, (200, "ok\n".to_string()));
    assert_eq!(http_get(endpoint, &get("/ready")).await, (503, "not ready: no live worker for ADD\n".to_string()));

    let mut config = WorkerConfig::new("W1", cluster.root.path(), cluster.main(), &["ADD"], secret);
    config.heartbeat = Duration::from_millis(300);
    config.options.metrics_listen = Some(loopback(0));
    let worker = Worker::new(config).start().await.expect("the worker joins");
    assert_eq!(http_get(endpoint, &get("/ready")).await.0, 200, "ready once W1 offers ADD");
    let worker_endpoint = worker.metrics_address().expect("the worker's endpoint");
    assert_eq!(http_get(worker_endpoint, &get("/ready")).await, (200, "ready\n".to_string()));
    let text = scrape(endpoint).await;
    assert_eq!(sample(&text, "ftpcalc_worker_up{worker=\"W1\"}"), Some(1.0), "{text}");

    worker.shutdown().await;
    let (code, body) = http_get(endpoint, &get("/ready")).await;
    assert_eq!((code, body.as_str()), (503, "not ready: no live worker for ADD\n"), "the last ADD worker left");
    assert_eq!(sample(&scrape(endpoint).await, "ftpcalc_worker_up{worker=\"W1\"}"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answers_bad_requests_clearly_and_bounds_what_it_reads() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.metrics_listen = Some(loopback(0));
            config.workers(Vec::new())
        },
        |cluster| cluster,
    )
    .await;
    let endpoint = cluster.cluster.metrics_address().expect("an endpoint");
    assert_eq!(http_get(endpoint, &get("/nothing")).await.0, 404);
    assert_eq!(http_get(endpoint, &get("/metrics/../health")).await.0, 404);
    let post = "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(http_get(endpoint, post).await.0, 405);
    assert_eq!(http_get(endpoint, "NONSENSE\r\n\r\n").await.0, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let (code, _) = http_get(endpoint, &huge).await;
    assert!(code == 431 || code == 0, "an oversized head is refused or cut ({code})");
    // A client that connects and sends nothing is let go after the header timeout.
    let mut silent = tokio::net::TcpStream::connect(endpoint).await.expect("connect");
    let mut buffer = [0u8; 256];
    let ended = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buffer)).await;
    assert!(matches!(ended, Ok(Ok(_)) | Ok(Err(_))), "a silent connection is closed within 15 s");
    // Still serving.
    assert_eq!(http_get(endpoint, &get("/health")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_log_has_one_xferlog_line_per_transfer_complete_or_cut_off() {
    let logs = tempfile::tempdir().expect("folder");
    let path = logs.path().join("xferlog");
    let log_path = path.clone();
    let cluster = TestCluster::start_config(
        move |mut config| {
            config.options.transfer_log = Some(log_path);
            config.workers(Vec::new())
        },
        |cluster| cluster,
    )
    .await;
    cluster.write_file("small file.txt", b"0123456789");
    let big = cluster.root.path().join("big.bin");
    std::fs::File::create(&big).and_then(|file| file.set_len(64 << 20)).expect("sparse file");

    let mut ftp = connect_as(cluster.main(), "alice", "x").await;
    ftp.put_file("up.txt", &mut std::io::Cursor::new(b"uploaded".to_vec())).await.expect("upload");
    assert_eq!(download(&mut ftp, "small file.txt").await, b"0123456789");
    let _ = ftp.quit().await;

    // A download cut off: ABOR after the first bytes.
    let mut raw = RawFtp::login(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("RETR big.bin").await.0, 150);
    let mut first = [0u8; 4096];
    data.read_exact(&mut first).await.expect("some data");
    raw.send("ABOR").await;
    assert_eq!(raw.reply().await.0, 426);
    assert_eq!(raw.reply().await.0, 226);
    drop(data);
    // An upload cut off: ABOR half-way.
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("STOR partial.bin").await.0, 150);
    data.write_all(&[7u8; 1000]).await.expect("send");
    data.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send("ABOR").await;
    assert_eq!(raw.reply().await.0, 426);
    assert_eq!(raw.reply().await.0, 226);
    drop(data);

    let mut lines = Vec::new();
    let complete = eventually(Duration::from_secs(10), async || {
        lines = std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= 4
    })
    .await;
    assert!(complete, "four lines: {lines:#?}");
    let fields: Vec<Vec<&str>> = lines.iter().map(|line| line.split_whitespace().collect()).collect();
    for (line, words) in lines.iter().zip(&fields) {
        assert_eq!(words.len(), 18, "{line}");
        let date = words[..5].join(" ");
        assert!(chrono::NaiveDateTime::parse_from_str(&date, "%a %b %e %H:%M:%S %Y").is_ok(), "{line}");
        assert!(words[5].parse::<u64>().is_ok(), "transfer time: {line}");
        assert_eq!(words[6], "127.0.0.1", "{line}");
        assert_eq!((words[9], words[10]), ("b", "_"), "{line}");
        assert_eq!(words[12], "r", "{line}");
        assert_eq!(&words[14..17], ["ftp", "0", "*"], "{line}");
    }
    let find = |path: &str| {
        fields.iter().find(|words| words[8] == path).unwrap_or_else(|| panic!("no line for {path}: {lines:#?}"))
    };
    let upload = find("/up.txt");
    assert_eq!((upload[7], upload[11], upload[13], upload[17]), ("8", "i", "alice", "c"));
    let download = find("/small_file.txt");
    assert_eq!((download[7], download[11], download[13], download[17]), ("10", "o", "alice", "c"));
    let cut = find("/big.bin");
    assert_eq!((cut[11], cut[17]), ("o", "i"), "an aborted download is incomplete");
    let bytes: u64 = cut[7].parse().expect("bytes");
    assert!((4096..64 << 20).contains(&bytes), "{bytes} bytes sent before ABOR");
    let partial = find("/partial.bin");
    assert_eq!((partial[7], partial[11], partial[17]), ("1000", "i", "i"), "an aborted upload is incomplete");
    assert!(!cluster.root.path().join("partial.bin").exists());
}
