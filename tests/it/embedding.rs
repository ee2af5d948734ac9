//! The library as an embedder uses it: a service of their own, routed by the main server to
//! the worker that offers it, next to the arithmetic ones; and a single server that computes
//! everything itself.

use async_trait::async_trait;
use ftpcalc::{Service, ServiceError, WorkerSpec};

use crate::support::{connect, site, TestCluster};

/// `SITE REVERSE WORD...`: the words in reverse order.
struct Reverse;

#[async_trait]
impl Service for Reverse {
    fn name(&self) -> &str {
        "REVERSE"
    }
    fn usage(&self) -> &str {
        "REVERSE WORD [WORD ...]: the words in reverse order"
    }
    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
        let words = ftpcalc::services::plain_words(self, arguments)?;
        if words.is_empty() {
            return Err(ServiceError::usage(self, "REVERSE needs a word"));
        }
        Ok(words)
    }
    async fn call(&self, words: &[String]) -> Result<String, ServiceError> {
        Ok(words.iter().rev().cloned().collect::<Vec<_>>().join(" "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedders_service_is_routed_to_the_worker_that_offers_it() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.workers.push(WorkerSpec::new("SV5", &["REVERSE"]));
            config
        },
        |cluster| cluster.service(Reverse),
    )
    .await;
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "REVERSE a b  c").await, (200, "c b a (computed by SV5)".to_string()));
    assert_eq!(site(&mut ftp, "ADD 1 1").await, (200, "2 (computed by SV1)".to_string()));
    assert_eq!(site(&mut ftp, "LOOKUP reverse").await, (200, format!("REVERSE SV5={}", cluster.address("SV5"))));
    let (code, text) = site(&mut ftp, "REVERSE").await;
    assert_eq!(code, 501, "{text}");
    assert!(text.contains("usage: REVERSE WORD"), "{text}");
    let (_, help) = site(&mut ftp, "HELP").await;
    assert!(help.contains("REVERSE WORD [WORD ...]: the words in reverse order (routed to a worker)"), "{help}");
    let mut sv1 = connect(cluster.address("SV1")).await;
    assert_eq!(site(&mut sv1, "REVERSE x").await.0, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_computes_its_services_itself() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.workers.clear();
            config.main_services = vec!["ADD".into(), "REVERSE".into()];
            config
        },
        |cluster| cluster.service(Reverse),
    )
    .await;
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "ADD 2 2").await, (200, "4 (computed by SV0)".to_string()));
    assert_eq!(site(&mut ftp, "REVERSE 1 2").await, (200, "2 1 (computed by SV0)".to_string()));
    assert_eq!(site(&mut ftp, "LOOKUP ADD").await, (200, format!("ADD SV0={}", cluster.main())));
    assert_eq!(site(&mut ftp, "SUB 2 2").await.0, 451);
}
