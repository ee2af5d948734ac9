//! Many clients at once: 64 connections to the main server, each sending hundreds of mixed
//! requests with random large operands; every answer is checked against num-bigint locally.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ftpcalc::cluster::worker_client::CONNECTIONS_PER_WORKER;
use ftpcalc::{Service, ServiceError, WorkerSpec};
use num_bigint::BigInt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{answer_and_server, connect, site, TestCluster};

const CLIENTS: usize = 64;
const REQUESTS_PER_CLIENT: usize = 200;

fn random_operand(rng: &mut StdRng) -> BigInt {
    let digits = rng.gen_range(1..=120);
    let text: String = (0..digits).map(|index| char::from(b'0' + rng.gen_range(u8::from(index == 0)..10))).collect();
    let value: BigInt = text.parse().expect("digits");
    if rng.gen_bool(0.3) {
        -value
    } else {
        value
    }
}

/// One random request: the SITE line, the expected answer and the worker that must compute it.
fn random_request(rng: &mut StdRng) -> (String, BigInt, &'static str) {
    let count = rng.gen_range(2..=6);
    let operands: Vec<BigInt> = (0..count).map(|_| random_operand(rng)).collect();
    let words = operands.iter().map(BigInt::to_string).collect::<Vec<_>>().join(" ");
    match rng.gen_range(0..4) {
        0 => (format!("ADD {words}"), operands.iter().sum(), "SV1"),
        1 => {
            let expected = operands[1..].iter().fold(operands[0].clone(), |difference, operand| difference - operand);
            (format!("SUB {words}"), expected, "SV2")
        }
        2 => (format!("MUL {words}"), operands.iter().product(), "SV3"),
        _ => (format!("INC {}", operands[0]), &operands[0] + 1, "SV4"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_get_exact_answers_for_random_large_operands() {
    let cluster = TestCluster::start().await;
    let main = cluster.main();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        clients.spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut ftp = connect(main).await;
            for _ in 0..REQUESTS_PER_CLIENT {
                let (line, expected, worker) = random_request(&mut rng);
                let (code, text) = site(&mut ftp, &line).await;
                assert_eq!(code, 200, "client {client}: SITE {line}: {text}");
                let (answer, server) = answer_and_server(&text);
                assert_eq!(answer, expected.to_string(), "client {client}: SITE {line}");
                assert_eq!(server, worker, "client {client}: SITE {line}");
            }
            ftp.quit().await.expect("QUIT");
            REQUESTS_PER_CLIENT
        });
    }
    let answered = crate::support::sum_of(clients, Duration::from_secs(300)).await;
    assert_eq!(answered, CLIENTS * REQUESTS_PER_CLIENT);
    // The arithmetic is quick: 64 clients' requests shared a few pipelined connections per
    // worker rather than one each.
    let workers = cluster.cluster.router().workers();
    for worker in ["SV1", "SV2", "SV3", "SV4"] {
        let open = workers.open_connections(cluster.address(worker));
        assert!((1..=CONNECTIONS_PER_WORKER).contains(&open), "{worker}: {open} connections");
    }
}

/// `SITE GATHER`: answers `met` only once `GATHERED` requests are inside it at the same time
/// (or `alone` after 10 s), so it can only succeed if the main server forwards concurrent
/// requests over separate worker connections.
struct Gather {
    barrier: Arc<tokio::sync::Barrier>,
}

const GATHERED: usize = 16;

#[async_trait]
impl Service for Gather {
    fn name(&self) -> &str {
        "GATHER"
    }
    fn usage(&self) -> &str {
        "GATHER: waits for its peers"
    }
    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
        ftpcalc::services::plain_words(self, arguments)
    }
    async fn call(&self, _words: &[String]) -> Result<String, ServiceError> {
        let met = tokio::time::timeout(Duration::from_secs(10), self.barrier.wait()).await.is_ok();
        Ok(if met { "met" } else { "alone" }.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_do_not_queue_behind_one_worker_connection() {
    let gather = Gather { barrier: Arc::new(tokio::sync::Barrier::new(GATHERED)) };
    let cluster = TestCluster::start_config(
        |mut config| {
            config.workers.push(WorkerSpec::new("SV5", &["GATHER"]));
            config.worker_timeout = Duration::from_secs(20);
            config
        },
        |cluster| cluster.service(gather),
    )
    .await;
    let main = cluster.main();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..GATHERED {
        clients.spawn(async move {
            let mut ftp = connect(main).await;
            site(&mut ftp, "GATHER").await
        });
    }
    while let Some(result) = clients.join_next().await {
        let (code, text) = result.expect("client task");
        assert_eq!((code, text.as_str()), (200, "met (computed by SV5)"));
    }
    // GATHER is not quick: each request had a connection to itself.
    assert_eq!(cluster.cluster.router().workers().open_connections(cluster.address("SV5")), GATHERED);
}
