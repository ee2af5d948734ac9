//! An embedder's cluster: the arithmetic services plus `SITE CLOCK`, a service of our own that
//! tells the time on the worker that computes it.
//!
//! Run it with `cargo run --example custom_service`, then try
//! `curl -v -Q "SITE CLOCK" ftp://127.0.0.1:2221/`.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ftpcalc::{Cluster, ClusterConfig, Service, ServiceError, WorkerSpec};

/// `SITE CLOCK`: seconds since the Unix epoch on the worker that answers.
struct Clock;

#[async_trait]
impl Service for Clock {
    fn name(&self) -> &str {
        "CLOCK"
    }

    fn usage(&self) -> &str {
        "CLOCK: seconds since the Unix epoch"
    }

    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
        if arguments.trim().is_empty() {
            Ok(Vec::new())
        } else {
            Err(ServiceError::usage(self, "CLOCK takes no arguments"))
        }
    }

    async fn call(&self, _words: &[String]) -> Result<String, ServiceError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
        Ok(now.to_string())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let mut config = ClusterConfig::new("SV0", "ftp-folder").listen("127.0.0.1:2221".parse()?);
    config.workers.push(WorkerSpec::new("SV5", &["CLOCK"]));
    let cluster = Cluster::new(config).service(Clock).start().await?;
    print!("{}", cluster.table());
    tokio::signal::ctrl_c().await?;
    cluster.shutdown().await;
    Ok(())
}
