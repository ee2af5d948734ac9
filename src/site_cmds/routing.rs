//! Services the main server routes to workers: parse the request with the catalogue's service
//! (`501` before any network I/O), hand the canonical words to the [`Router`], and turn the
//! worker's reply into ours. The request a worker sees is rebuilt from the parsed words, never
//! the client's text.
//!
//! [`Router`]: crate::cluster::router::Router

use async_trait::async_trait;
use libunftp::options::{Reply, ReplyCode};

use crate::cluster::router::{Handling, RouteError, Routed};
use crate::services::{plain_words, Service, ServiceError};
use crate::site_cmds::{one_line, ClusterView, SiteContext, SiteError};

/// Validates the request, then routes it to a worker that offers `service`.
pub async fn route(server: &SiteContext, service: &str, arguments: &str) -> Result<Reply, SiteError> {
    let ClusterView::Main { router, .. } = &server.cluster else {
        return Err(SiteError::NoWorker(service.to_string()));
    };
    let (words, handling) = match server.catalog.get(service) {
        Some(known) => (known.parse(arguments)?, Handling { idempotent: known.idempotent(), quick: known.quick() }),
        // A service only a registered worker knows: its words are checked generically, and
        // nothing says it is safe to run twice or quick.
        None => (plain_words(&RoutedOnly(service.to_string()), arguments)?, Handling::default()),
    };
    match router.route(service, &words, handling).await {
        Ok(routed) => relay(service, routed),
        Err(RouteError::NoWorker(service)) => Err(SiteError::NoWorker(service)),
        Err(RouteError::Worker { worker, source }) => {
            Err(SiteError::Worker { service: service.to_string(), worker: worker.name, source })
        }
    }
}

/// Turns a worker's reply into ours: its answer and its own refusals of the arguments or its
/// transient failures are relayed (on one line), anything else is the worker's failure.
fn relay(service: &str, Routed { worker, reply }: Routed) -> Result<Reply, SiteError> {
    let text = one_line(&reply.text());
    match reply.code {
        200 => Ok(Reply::new_with_string(ReplyCode::CommandOkay, text)),
        501 => Err(SiteError::WorkerUsage(text)),
        451 => Err(SiteError::WorkerTransient(text)),
        code => Err(SiteError::WorkerRefused { service: service.to_string(), worker: worker.name, code, text }),
    }
}

/// Stands in for a service the main server only knows by name (offered by a worker that
/// joined with it), so that its words are checked generically before routing.
struct RoutedOnly(String);

#[async_trait]
impl Service for RoutedOnly {
    fn name(&self) -> &str {
        &self.0
    }
    fn usage(&self) -> &str {
        "see SITE HELP on a worker that offers it"
    }
    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
        plain_words(self, arguments)
    }
    async fn call(&self, words: &[String]) -> Result<String, ServiceError> {
        Ok(words.join(" "))
    }
}
