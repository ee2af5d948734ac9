//! The shared registry and download counters of a cluster with several main servers, on etcd.
//!
//! Every main server keeps its own [`Registry`] (routing reads it without I/O, as with the
//! in-process registry) and [`Etcd::spawn_sync`] keeps the registry's shared entries equal to
//! what etcd holds under [`SERVERS`]: a full read, then a watch from the revision after it; when
//! the watch breaks (a member died, etcd lost its quorum, all of etcd stopped) the main server
//! keeps the entries it last saw, says so ([`Etcd::is_online`], logs, `/ready`), and reads
//! everything again once etcd answers.
//!
//! A registration is written by whichever main server received it ([`Etcd::publish`]): the key
//! `/ftpcalc/servers/NAME` under a new lease whose TTL is the worker TTL, so that a worker that
//! stops renewing disappears from every main server when the lease lapses. Download counts are
//! one key per file under [`DOWNLOADS`], incremented with a compare-and-swap transaction, so
//! counts are exact whichever main server serves the downloads.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};

use crate::cluster::registry::{Registry, Role, ServerEntry};
use crate::cluster::shared::{check_endpoints, EndpointError, SharedRegistry};
use crate::ftp_backend::downloads::SharedCounts;

/// Where the servers are: one key per server, `/ftpcalc/servers/NAME`.
pub const SERVERS: &str = "/ftpcalc/servers/";
/// Where the download counts are: one key per file, `/ftpcalc/downloads/PATH`.
pub const DOWNLOADS: &str = "/ftpcalc/downloads";
/// How long a main server's own entry lasts in etcd unless renewed.
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);
/// How often a main server renews its own entry.
pub const PRESENCE_BEAT: Duration = Duration::from_secs(3);
/// How long one request to etcd may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest value read back from etcd (a server entry is a short line).
const MAX_VALUE_BYTES: usize = 4096;
/// Most compare-and-swap rounds of one counter increment (each lost round means another main
/// server's increment went in).
const MAX_INCREMENT_ROUNDS: usize = 1000;

/// Why etcd could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The endpoints are not usable.
    #[error(transparent)]
    Endpoints(#[from] EndpointError),
    /// etcd did not answer, or answered with an error.
    #[error("etcd: {0}")]
    Unreachable(String),
    /// A counter was changed by others on every try.
    #[error("etcd: the counter of {0} kept changing under contention")]
    Contention(String),
}

impl From<etcd_client::Error> for EtcdError {
    fn from(error: etcd_client::Error) -> Self {
        EtcdError::Unreachable(error.to_string())
    }
}

/// A connection to etcd, shared by everything of one main server. Cloning shares it.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    endpoints: Arc<[String]>,
    online: Arc<AtomicBool>,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Etcd").field("endpoints", &self.endpoints).field("online", &self.is_online()).finish()
    }
}

impl Etcd {
    /// A client for `endpoints` (`HOST:PORT`). It connects lazily: etcd need not be up yet.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd, EtcdError> {
        check_endpoints(endpoints)?;
        let urls: Vec<String> = endpoints.iter().map(|endpoint| format!("http://{endpoint}")).collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            // HTTP/2 pings notice a member that died without closing its connections, so that
            // a watch breaks and is made again on a live member.
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // A member cut off from the others must not serve a watch that never fires.
            .with_require_leader(true);
        let client = Client::connect(urls, Some(options)).await?;
        Ok(Etcd { client, endpoints: endpoints.into(), online: Arc::new(AtomicBool::new(false)) })
    }

    /// True while the watch of the registry runs (etcd answered the last read).
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Writes `entry` under a new lease of `ttl` (rounded up to whole seconds): every main
    /// server sees it, until it is renewed or the lease lapses. The lease of the previous
    /// registration is revoked (it holds no key any more). Tried again (within
    /// [`REQUEST_TIMEOUT`]) when a member fails under it: writing twice is harmless.
    pub async fn publish(&self, entry: &ServerEntry, ttl: Duration) -> Result<(), EtcdError> {
        let started = tokio::time::Instant::now();
        let mut round = 0;
        loop {
            match self.publish_once(entry, ttl).await {
                Err(error) if round < 3 && started.elapsed() < REQUEST_TIMEOUT => {
                    tracing::debug!(%error, "etcd write failed, trying again");
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(100 * round)).await;
                }
                done => return done,
            }
        }
    }

    async fn publish_once(&self, entry: &ServerEntry, ttl: Duration) -> Result<(), EtcdError> {
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).unwrap_or(i64::MAX).max(1);
        let mut client = self.client.clone();
        let lease = bounded(client.lease_grant(seconds, None)).await?.id();
        let options = PutOptions::new().with_lease(lease).with_prev_key();
        let put = bounded(client.put(server_key(&entry.name), encode(entry), Some(options))).await?;
        let previous = put.prev_key().map(KeyValue::lease).filter(|previous| *previous != 0 && *previous != lease);
        if let Some(previous) = previous {
            tokio::spawn(async move {
                let _ = bounded(client.lease_revoke(previous)).await;
            });
        }
        Ok(())
    }

    /// Removes the server `name`; true if it was there.
    pub async fn withdraw(&self, name: &str) -> Result<bool, EtcdError> {
        let mut client = self.client.clone();
        let mut round = 0;
        loop {
            match bounded(client.delete(server_key(name), None)).await {
                Ok(deleted) => return Ok(deleted.deleted() > 0),
                Err(error) if round < 3 => {
                    tracing::debug!(%error, "etcd delete failed, trying again");
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(100 * round)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Keeps `registry`'s shared entries equal to etcd's, and `own` (this main server) in etcd
    /// under a lease of [`PRESENCE_TTL`] renewed every [`PRESENCE_BEAT`], so that the other main
    /// servers list it and no worker takes its name; for as long as the process runs.
    pub fn spawn_sync(&self, registry: Registry, own: ServerEntry) -> tokio::task::JoinHandle<()> {
        let (follower, presence) = (self.clone(), self.clone());
        tokio::spawn(async move {
            tokio::join!(follower.follow_forever(registry), presence.announce_forever(own));
        })
    }

    async fn announce_forever(&self, own: ServerEntry) {
        loop {
            if let Err(error) = self.publish(&own, PRESENCE_TTL).await {
                tracing::debug!(%error, "cannot renew this main server's entry in etcd");
            }
            tokio::time::sleep(PRESENCE_BEAT).await;
        }
    }

    async fn follow_forever(&self, registry: Registry) {
        let mut pause = Duration::from_millis(200);
        loop {
            let error = self.follow(&registry).await;
            if self.online.swap(false, Ordering::Relaxed) {
                pause = Duration::from_millis(200);
                tracing::warn!(
                    %error,
                    servers = registry.servers().len(),
                    "etcd unreachable: routing with the last registry seen, registrations refused until it is back"
                );
            } else {
                tracing::debug!(%error, "etcd still unreachable");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Reads every server, then applies etcd's changes as they come; returns why it stopped.
    async fn follow(&self, registry: &Registry) -> EtcdError {
        let mut client = self.client.clone();
        let read = match bounded(client.get(SERVERS, Some(GetOptions::new().with_prefix()))).await {
            Ok(read) => read,
            Err(error) => return error,
        };
        let revision = read.header().map_or(0, |header| header.revision());
        let entries: Vec<ServerEntry> = read.kvs().iter().filter_map(decode_logged).collect();
        for (name, error) in registry.replace_shared(entries) {
            tracing::warn!(server = %name, %error, "entry in etcd refused");
        }
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut watch = match bounded(client.watch(SERVERS, Some(options))).await {
            Ok(watch) => watch,
            Err(error) => return error,
        };
        if !self.online.swap(true, Ordering::Relaxed) {
            tracing::info!(servers = registry.servers().len(), revision, "registry in step with etcd");
        }
        loop {
            let message = match watch.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return EtcdError::Unreachable("the watch ended".into()),
                Err(error) => return error.into(),
            };
            if message.canceled() {
                return EtcdError::Unreachable(format!("the watch was cancelled: {}", message.cancel_reason()));
            }
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        if let Some(entry) = decode_logged(kv) {
                            if let Err(error) = registry.upsert_shared(entry) {
                                tracing::warn!(%error, "entry in etcd refused");
                            }
                        }
                    }
                    EventType::Delete => {
                        let name = kv.key_str().unwrap_or_default().trim_start_matches(SERVERS).to_string();
                        if registry.remove_shared(&name) {
                            tracing::info!(worker = %name, "worker left the registry (etcd)");
                        }
                    }
                }
            }
        }
    }

    /// Adds `by` to the download count of `path` (normalised, from the FTP root) and returns
    /// the new count: exact whatever other main servers count at the same time.
    pub async fn add_download(&self, path: &str, by: u64) -> Result<u64, EtcdError> {
        let key = download_key(path);
        let mut client = self.client.clone();
        // Guess "no key yet" (mod revision 0); a failed comparison reads the real value.
        let (mut count, mut revision) = (0u64, 0i64);
        for _ in 0..MAX_INCREMENT_ROUNDS {
            let next = count.saturating_add(by);
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, revision)])
                .and_then([TxnOp::put(key.clone(), next.to_string(), None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let answer = bounded(client.txn(txn)).await?;
            if answer.succeeded() {
                return Ok(next);
            }
            let current = answer.op_responses().into_iter().find_map(|response| match response {
                TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| (count_of(kv), kv.mod_revision()))),
                _ => None,
            });
            (count, revision) = current.flatten().unwrap_or((0, 0));
        }
        Err(EtcdError::Contention(path.to_string()))
    }

    /// The download count of `path`.
    pub async fn download_count(&self, path: &str) -> Result<u64, EtcdError> {
        let mut client = self.client.clone();
        let read = bounded(client.get(download_key(path), None)).await?;
        Ok(read.kvs().first().map_or(0, count_of))
    }

    /// The first `limit` counted files below `folder` (`/alice/`) with their counts, by path,
    /// and how many there are in all.
    pub async fn downloads_under(&self, folder: &str, limit: usize) -> Result<(Vec<(String, u64)>, usize), EtcdError> {
        let prefix = download_key(folder);
        let mut client = self.client.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let read = bounded(client.get(prefix.clone(), Some(GetOptions::new().with_prefix().with_limit(limit)))).await?;
        let listed = read
            .kvs()
            .iter()
            .filter_map(|kv| Some((kv.key_str().ok()?.strip_prefix(DOWNLOADS)?.to_string(), count_of(kv))))
            .collect();
        let total = usize::try_from(read.count()).unwrap_or(usize::MAX);
        Ok((listed, total))
    }
}

#[async_trait::async_trait]
impl SharedRegistry for Etcd {
    async fn publish(&self, entry: &ServerEntry, ttl: Duration) -> Result<(), String> {
        Etcd::publish(self, entry, ttl).await.map_err(|error| error.to_string())
    }

    async fn withdraw(&self, name: &str) -> Result<bool, String> {
        Etcd::withdraw(self, name).await.map_err(|error| error.to_string())
    }

    fn is_online(&self) -> bool {
        Etcd::is_online(self)
    }

    fn describe(&self) -> String {
        format!("etcd ({})", self.endpoints.join(","))
    }
}

#[async_trait::async_trait]
impl SharedCounts for Etcd {
    async fn add(&self, path: &str, by: u64) -> Result<u64, String> {
        self.add_download(path, by).await.map_err(|error| error.to_string())
    }

    async fn count(&self, path: &str) -> Result<u64, String> {
        self.download_count(path).await.map_err(|error| error.to_string())
    }

    async fn under(&self, folder: &str, limit: usize) -> Result<(Vec<(String, u64)>, usize), String> {
        self.downloads_under(folder, limit).await.map_err(|error| error.to_string())
    }

    fn is_online(&self) -> bool {
        Etcd::is_online(self)
    }
}

/// Runs one etcd request within [`REQUEST_TIMEOUT`].
async fn bounded<T>(request: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, EtcdError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(answer) => answer.map_err(EtcdError::from),
        Err(_) => Err(EtcdError::Unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))),
    }
}

fn server_key(name: &str) -> String {
    format!("{SERVERS}{name}")
}

fn download_key(path: &str) -> String {
    format!("{DOWNLOADS}{path}")
}

fn count_of(kv: &KeyValue) -> u64 {
    kv.value_str().ok().and_then(|value| value.parse().ok()).unwrap_or(0)
}

/// A server entry as stored in etcd: `ROLE ADDRESS SERVICE,SERVICE…` (`worker 10.0.0.5:2122
/// ADD,SUB`; `-` for no service).
pub fn encode(entry: &ServerEntry) -> String {
    let services = if entry.services.is_empty() { "-".to_string() } else { entry.services.join(",") };
    format!("{} {} {services}", entry.role, entry.address)
}

/// Reads back what [`encode`] wrote for the server `name`; `None` for anything else.
pub fn decode(name: &str, value: &[u8]) -> Option<ServerEntry> {
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    let mut words = value.split(' ');
    let role = match words.next()? {
        "worker" => Role::Worker,
        "main" => Role::Main,
        _ => return None,
    };
    let address: SocketAddr = words.next()?.parse().ok()?;
    let services = match words.next()? {
        "-" => Vec::new(),
        list => list.split(',').map(str::to_string).collect(),
    };
    if words.next().is_some() {
        return None;
    }
    Registry::validate(ServerEntry { name: name.to_string(), address, role, services }).ok()
}

fn decode_logged(kv: &KeyValue) -> Option<ServerEntry> {
    let name = kv.key_str().ok()?.strip_prefix(SERVERS)?;
    let entry = decode(name, kv.value());
    if entry.is_none() {
        // As a string: quoted, control characters escaped (anything can be written into etcd).
        tracing::warn!(
            key = String::from_utf8_lossy(&kv.key()[..kv.key().len().min(200)]).as_ref(),
            "unreadable entry in etcd skipped"
        );
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entries_round_trip_and_garbage_is_skipped() {
        let entry = ServerEntry {
            name: "W1".into(),
            address: "127.0.0.1:2122".parse().expect("address"),
            role: Role::Worker,
            services: vec!["ADD".into(), "SUB".into()],
        };
        assert_eq!(decode("W1", encode(&entry).as_bytes()), Some(entry.clone()));
        let bare = ServerEntry { services: Vec::new(), ..entry };
        assert_eq!(decode("W1", encode(&bare).as_bytes()), Some(bare));
        for garbage in
            ["", "worker", "boss 1.2.3.4:5 ADD", "worker nowhere ADD", "worker 1.2.3.4:5 A B", "worker 1.2.3.4:5 A|B"]
        {
            assert_eq!(decode("W1", garbage.as_bytes()), None, "{garbage:?}");
        }
        assert_eq!(decode("bad name", b"worker 1.2.3.4:5 ADD"), None);
        assert_eq!(decode("W1", &[0xff, 0xfe]), None);
    }

    proptest! {
        #[test]
        fn any_value_decodes_or_is_skipped_without_panic(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode("W1", &value);
        }

    }
}
