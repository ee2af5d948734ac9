//! Faults: workers that die, hang or are missing give a prompt transient 451 for their service
//! only; nothing hangs and no answer is ever wrong.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{answer_and_server, connect, site, Fake, FakeWorker, TestCluster};

/// Longest any single request may take here: the test worker timeout (2 s, the whole budget of
/// a request, a retry on a second worker included) plus ample slack for a loaded machine. A
/// request slower than that counts as a hang.
const HANG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_worker_mid_traffic_fails_only_its_service_and_only_with_451() {
    let mut cluster = TestCluster::start().await;
    let main = cluster.main();
    let stopped = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..16u64 {
        let stopped = stopped.clone();
        clients.spawn(async move {
            let mut ftp = connect(main).await;
            let mut after_stop = 0;
            let mut add_failures_after_stop = 0usize;
            for request in 0..20_000u64 {
                let was_stopped = stopped.load(Ordering::SeqCst);
                let (line, expected, worker) = if request % 2 == 0 {
                    (format!("ADD {client} {request}"), client + request, "SV1")
                } else {
                    (format!("MUL {client} {request}"), client * request, "SV3")
                };
                let (code, text) = tokio::time::timeout(HANG, site(&mut ftp, &line)).await.expect("no request hangs");
                match code {
                    200 => assert_eq!(answer_and_server(&text), (expected.to_string().as_str(), worker), "SITE {line}"),
                    451 => {
                        assert_eq!(worker, "SV1", "only ADD may fail: SITE {line}: {text}");
                        assert!(text.contains("try again later"), "{text}");
                    }
                    other => panic!("SITE {line}: unexpected {other} {text}"),
                }
                if was_stopped {
                    after_stop += 1;
                    if worker == "SV1" {
                        assert_eq!(code, 451, "ADD answered after SV1 stopped: {text}");
                        add_failures_after_stop += 1;
                    }
                    if after_stop == 40 {
                        return add_failures_after_stop;
                    }
                }
            }
            panic!("client {client} never saw the stop");
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cluster.cluster.stop_server("SV1").await, "SV1 was running");
    stopped.store(true, Ordering::SeqCst);
    let failures = crate::support::sum_of(clients, Duration::from_secs(120)).await;
    assert_eq!(failures, 16 * 20, "every ADD after the stop got 451");
    let mut ftp = connect(main).await;
    let (code, text) = site(&mut ftp, "SUB 5 1").await;
    assert_eq!((code, text.as_str()), (200, "4 (computed by SV2)"));
}

/// A worker that accepts connections and never says anything (a stopped process).
async fn silent_worker() -> FakeWorker {
    let worker = FakeWorker::start(Fake::Add).await;
    worker.freeze();
    worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_gets_451_after_the_timeout_and_others_keep_working() {
    let cluster = TestCluster::start_config(
        |config| config.workers(vec![ftpcalc::WorkerSpec::new("SV1", &["ADD"])]),
        |cluster| cluster,
    )
    .await;
    let silent = silent_worker().await;
    cluster.cluster.registry().register(silent.entry("SV9", &["INC"])).expect("register");
    let mut hung = connect(cluster.main()).await;
    let mut healthy = connect(cluster.main()).await;
    let (hung_reply, healthy_reply) = tokio::join!(
        tokio::time::timeout(HANG, site(&mut hung, "INC 1")),
        tokio::time::timeout(HANG, site(&mut healthy, "ADD 1 1")),
    );
    let (code, text) = hung_reply.expect("the hung worker's request ends");
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("SV9") && text.contains("try again later"), "{text}");
    assert_eq!(healthy_reply.expect("ADD is not delayed"), (200, "2 (computed by SV1)".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_is_retried_once_on_another_worker() {
    let cluster = TestCluster::start().await;
    let silent = silent_worker().await;
    cluster.cluster.registry().register(silent.entry("SV9", &["ADD"])).expect("register");
    let mut ftp = connect(cluster.main()).await;
    for request in 0..4u32 {
        let (code, text) =
            tokio::time::timeout(HANG, site(&mut ftp, &format!("ADD {request} 1"))).await.expect("no hang");
        assert_eq!((code, answer_and_server(&text)), (200, ((request + 1).to_string().as_str(), "SV1")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_workers_gets_451_and_lookup_says_so() {
    let cluster = TestCluster::start_config(
        |config| config.workers(vec![ftpcalc::WorkerSpec::new("SV1", &["ADD"])]),
        |cluster| cluster,
    )
    .await;
    let mut ftp = connect(cluster.main()).await;
    let (code, text) = site(&mut ftp, "MUL 2 3").await;
    assert_eq!((code, text.as_str()), (451, "no worker available for MUL, try again later"));
    let (code, text) = site(&mut ftp, "LOOKUP MUL").await;
    assert_eq!((code, text.as_str()), (451, "no worker available for MUL, try again later"));
    let (code, text) = site(&mut ftp, "MUL x 3").await;
    assert_eq!(code, 501, "input is checked before routing: {text}");
    let (code, text) = site(&mut ftp, "ADD 2 3").await;
    assert_eq!((code, text.as_str()), (200, "5 (computed by SV1)"));
}
