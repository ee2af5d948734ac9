//! How the main server routes (issue 9): per-service round-robin, the one retry policy (retry
//! only what is safe to run twice, or what never reached a worker), requests rebuilt from the
//! parsed numbers, worker answers sanitised, failed workers out of rotation until a health probe
//! answers, and a hung worker under load.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use ftpcalc::{Service, ServiceError, WorkerSpec};
use tokio::time::Instant;

use crate::support::{answer_and_server, connect, eventually, site, Fake, FakeWorker, RawFtp, TestCluster};

/// A cluster with no in-process worker: the tests register the workers they need.
async fn bare_cluster() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster.service(Tick)).await
}

/// `SITE TICK`: a service that is not safe to run twice (it would count twice), so the main
/// server never sends one request to two workers once it may have been carried out.
struct Tick;

#[async_trait]
impl Service for Tick {
    fn name(&self) -> &str {
        "TICK"
    }
    fn usage(&self) -> &str {
        "TICK: counts one"
    }
    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
        ftpcalc::services::plain_words(self, arguments)
    }
    async fn call(&self, _words: &[String]) -> Result<String, ServiceError> {
        Ok("1".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_offering_add_and_mul_share_each_service_evenly() {
    // Issue 9: one round-robin counter for all services sent every ADD to the same worker when
    // MUL requests were interleaved.
    let cluster = TestCluster::start_config(
        |config| config.workers(vec![WorkerSpec::new("W1", &["ADD", "MUL"]), WorkerSpec::new("W2", &["ADD", "MUL"])]),
        |cluster| cluster,
    )
    .await;
    let mut ftp = connect(cluster.main()).await;
    let mut shares: HashMap<(String, String), u32> = HashMap::new();
    for request in 0..100u32 {
        for (verb, expected) in [("ADD", request + 2), ("MUL", request * 2)] {
            let (code, text) = site(&mut ftp, &format!("{verb} {request} 2")).await;
            let (answer, worker) = answer_and_server(&text);
            assert_eq!((code, answer), (200, expected.to_string().as_str()), "{verb} {request} 2: {text}");
            *shares.entry((verb.to_string(), worker.to_string())).or_default() += 1;
        }
    }
    for verb in ["ADD", "MUL"] {
        let on_w1 = shares.get(&(verb.to_string(), "W1".to_string())).copied().unwrap_or(0);
        // Exactly 50/50 unless a request was hedged on a loaded machine; never all on one.
        assert!((40..=60).contains(&on_w1), "{verb}: W1 computed {on_w1} of 100 ({shares:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idempotent_request_is_retried_once_on_another_worker() {
    let cluster = bare_cluster().await;
    let broken = FakeWorker::start(Fake::Close).await;
    let good = FakeWorker::start(Fake::Answer("200 5 (computed by GOOD)")).await;
    let registry = cluster.cluster.registry();
    registry.register(broken.entry("BROKEN", &["ADD"])).expect("register");
    registry.register(good.entry("GOOD", &["ADD"])).expect("register");
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "ADD 2 3").await, (200, "5 (computed by GOOD)".to_string()));
    assert_eq!(broken.requests(), ["ADD 2 3"], "the broken worker got the request once");
    assert_eq!(good.requests(), ["ADD 2 3"], "and the retry went to the other worker");
    assert_eq!(registry.state("BROKEN").map(|(_, failed)| failed), Some(true));
    for _ in 0..4 {
        assert_eq!(site(&mut ftp, "ADD 2 3").await.0, 200);
    }
    assert_eq!(broken.requests().len(), 1, "a failed worker is out of rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_non_idempotent_request_is_not_retried() {
    let cluster = bare_cluster().await;
    let broken = FakeWorker::start(Fake::Close).await;
    let good = FakeWorker::start(Fake::Answer("200 1 (computed by GOOD)")).await;
    let registry = cluster.cluster.registry();
    registry.register(broken.entry("BROKEN", &["TICK"])).expect("register");
    registry.register(good.entry("GOOD", &["TICK"])).expect("register");
    let mut ftp = connect(cluster.main()).await;
    let (code, text) = site(&mut ftp, "TICK").await;
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("BROKEN") && text.contains("try again later"), "{text}");
    assert_eq!(broken.requests(), ["TICK"]);
    assert!(good.requests().is_empty(), "the request may have been carried out: no second worker runs it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_reached_a_worker_is_retried_whatever_the_service() {
    let cluster = bare_cluster().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let good = FakeWorker::start(Fake::Answer("200 1 (computed by GOOD)")).await;
    let registry = cluster.cluster.registry();
    let mut gone = good.entry("GONE", &["TICK"]);
    gone.address = closed;
    registry.register(gone).expect("register");
    registry.register(good.entry("GOOD", &["TICK"])).expect("register");
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "TICK").await, (200, "1 (computed by GOOD)".to_string()));
    assert_eq!(good.requests(), ["TICK"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_sent_to_a_worker_is_rebuilt_from_the_parsed_numbers() {
    let cluster = bare_cluster().await;
    let recorder = FakeWorker::start(Fake::Answer("200 8 (computed by REC)")).await;
    cluster.cluster.registry().register(recorder.entry("REC", &["ADD", "INC"])).expect("register");
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "ADD +007 1").await.0, 200);
    assert_eq!(site(&mut ftp, "ADD   -0\t 000").await.0, 200);
    assert_eq!(site(&mut ftp, "inc +12345678901234567890").await.0, 200);
    assert_eq!(recorder.requests(), ["ADD 7 1", "ADD 0 0", "INC 12345678901234567890"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_workers_answer_never_reach_the_client() {
    let cluster = bare_cluster().await;
    let evil = FakeWorker::start(Fake::Answer("200 5\u{7}\u{1b}[31m\u{0}x (computed by EVIL)")).await;
    cluster.cluster.registry().register(evil.entry("EVIL", &["ADD"])).expect("register");
    let mut raw = RawFtp::login(cluster.main()).await;
    let (code, text) = raw.command("SITE ADD 2 3").await;
    assert_eq!(code, 200, "{text}");
    assert!(text.chars().all(|character| !character.is_control()), "{text:?}");
    assert!(text.contains("(computed by EVIL)"), "{text:?}");
    assert_eq!(raw.command("NOOP").await.0, 200, "the control connection is still in step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_worker_is_picked_again_once_a_health_probe_answers() {
    let cluster = bare_cluster().await;
    let flaky = FakeWorker::start(Fake::Close).await;
    let good = FakeWorker::start(Fake::Answer("200 5 (computed by GOOD)")).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let registry = cluster.cluster.registry();
    registry.register(flaky.entry("FLAKY", &["ADD"])).expect("register");
    let mut down = good.entry("DOWN", &["ADD"]);
    down.address = dead;
    registry.register(down).expect("register");
    registry.register(good.entry("GOOD", &["ADD"])).expect("register");
    let mut ftp = connect(cluster.main()).await;
    for _ in 0..3 {
        assert_eq!(site(&mut ftp, "ADD 2 3").await.0, 200);
    }
    assert_eq!(registry.state("FLAKY").map(|(_, failed)| failed), Some(true));
    assert_eq!(registry.state("DOWN").map(|(_, failed)| failed), Some(true));
    // FLAKY answers NOOP (it is alive), so its probe takes it back within a probe interval or
    // two; DOWN refuses connections and stays out.
    let back =
        eventually(Duration::from_secs(5), async || registry.state("FLAKY").is_some_and(|(_, failed)| !failed)).await;
    assert!(back, "FLAKY answered its probe and is picked again");
    assert_eq!(registry.state("DOWN").map(|(_, failed)| failed), Some(true), "a dead worker stays out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_under_load_never_stops_the_traffic_nor_holds_a_request_past_the_timeout() {
    // Issue 9: a stopped (not dead) worker stalled every client for the whole worker timeout,
    // twice. Here one of two ADD workers freezes (as under SIGSTOP) after the first second.
    let cluster =
        TestCluster::start_config(|config| config.workers(vec![WorkerSpec::new("W1", &["ADD"])]), |cluster| cluster)
            .await;
    let hung = FakeWorker::start(Fake::Add).await;
    cluster.cluster.registry().register(hung.entry("HUNG", &["ADD"])).expect("register");
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let hang_at = Duration::from_secs(1);
    let run_for = Duration::from_secs(5);
    let registry = cluster.cluster.registry().clone();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..32u64 {
        let main = cluster.main();
        clients.spawn(async move {
            let mut ftp = connect(main).await;
            let mut done = Vec::new();
            let mut request = 0u64;
            while started.elapsed() < run_for {
                request += 1;
                let sent = Instant::now();
                let (code, text) = site(&mut ftp, &format!("ADD {client} {request}")).await;
                assert_eq!(
                    (code, answer_and_server(&text).0),
                    (200, (client + request).to_string().as_str()),
                    "{text}"
                );
                done.push((sent.duration_since(started), sent.elapsed()));
            }
            done
        });
    }
    tokio::time::sleep_until(started + hang_at).await;
    let answered_before = hung.requests().len();
    hung.freeze();
    let mut done = Vec::new();
    while let Some(result) = clients.join_next().await {
        done.extend(result.expect("client task"));
    }
    let longest = done.iter().map(|(_, waited)| *waited).max().unwrap_or_default();
    assert!(longest <= timeout + Duration::from_millis(500), "a request waited {longest:?}");
    let window = Duration::from_millis(250);
    for start in (0..(run_for - window).as_millis() as u64).step_by(window.as_millis() as usize) {
        let from = Duration::from_millis(start);
        let answered =
            done.iter().filter(|(at, waited)| *at + *waited >= from && *at + *waited < from + window).count();
        assert!(answered > 0, "no request was answered between {from:?} and {:?}", from + window);
    }
    assert!(answered_before > 0, "the worker computed before it froze");
    assert_eq!(registry.state("HUNG").map(|(_, failed)| failed), Some(true), "and is out of rotation");
}
