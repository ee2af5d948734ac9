//! The registry: which servers exist, where they listen, which services each offers.
//!
//! It is a cheap handle around a shared table with a synchronous API and no I/O: callers copy
//! out what they need and the lock is never held across an `.await`. The main server owns it;
//! `SITE LOOKUP` and `SITE SERVERS` read it, and the router picks workers from it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock, so that tests can pause and advance time instead of sleeping.
use tokio::time::Instant;

use crate::services::is_valid_name;

/// Most servers the registry holds.
pub const MAX_SERVERS: usize = 256;
/// Most services one server may offer.
pub const MAX_SERVICES_PER_SERVER: usize = 64;

/// What part a server plays in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns the registry, answers `SITE LOOKUP`, routes service requests to workers.
    Main,
    /// Computes the services it offers.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Role::Main => "main",
            Role::Worker => "worker",
        })
    }
}

/// One server as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    /// The server's name, e.g. `SV1`.
    pub name: String,
    /// The address its FTP listener is bound to.
    pub address: SocketAddr,
    /// Main server or worker.
    pub role: Role,
    /// The services it computes itself, upper case, sorted.
    pub services: Vec<String>,
}

impl ServerEntry {
    /// True when this server computes `service` itself.
    pub fn offers(&self, service: &str) -> bool {
        self.services.iter().any(|offered| offered.eq_ignore_ascii_case(service))
    }
}

/// Why the registry refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry already holds [`MAX_SERVERS`] servers.
    #[error("the registry is full ({MAX_SERVERS} servers)")]
    Full,
    /// A server or service name is empty, too long or has characters other than letters,
    /// digits, `-` and `_`.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// A server offers more than [`MAX_SERVICES_PER_SERVER`] services.
    #[error("too many services (the limit is {MAX_SERVICES_PER_SERVER})")]
    TooManyServices,
}

/// A server in the table, with how long its registration lasts and whether it failed lately.
#[derive(Debug)]
struct Registration {
    entry: ServerEntry,
    /// When the registration lapses unless renewed; `None` for servers started in-process.
    expires: Option<Instant>,
    /// The worker failed a request: it is not picked until it is found healthy again (a health
    /// probe answered, or it renewed its registration).
    failed: bool,
    /// The entry comes from the shared registry (etcd): it lives as long as it is there, and a
    /// resynchronisation replaces every shared entry at once.
    shared: bool,
}

#[derive(Debug, Default)]
struct Table {
    servers: Vec<Registration>,
    /// Picks per service, so that successive picks of one service rotate over its workers
    /// whatever other services are picked in between. Bounded: entries exist only for
    /// services some registered server offers (pruned in `purge`).
    picks: HashMap<String, usize>,
}

impl Table {
    /// Drops registrations that lapsed, and the pick counters of services nobody offers.
    fn purge(&mut self, now: Instant) {
        let before = self.servers.len();
        self.servers.retain(|server| server.expires.is_none_or(|expires| expires > now));
        if self.servers.len() != before || self.picks.len() > MAX_SERVICES_PER_SERVER {
            let servers = &self.servers;
            self.picks.retain(|service, _| servers.iter().any(|server| server.entry.offers(service)));
        }
    }

    /// Puts `registration` in place of the one with the same name, or adds it if there is room.
    fn put(&mut self, registration: Registration) -> Result<(), RegistryError> {
        if let Some(existing) = self.servers.iter_mut().find(|server| server.entry.name == registration.entry.name) {
            *existing = registration;
        } else if self.servers.len() >= MAX_SERVERS {
            return Err(RegistryError::Full);
        } else {
            self.servers.push(registration);
        }
        Ok(())
    }

    fn live(&mut self) -> impl Iterator<Item = &ServerEntry> {
        self.purge(Instant::now());
        self.servers.iter().map(|server| &server.entry)
    }
}

/// The directory of servers. Cloning shares the same table.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    table: Arc<Mutex<Table>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the table half-changed (every change is
        // one push or one assignment), so a poisoned lock is still safe to use.
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `entry` for good (a server started in this process), or replaces the entry with the
    /// same name.
    pub fn register(&self, entry: ServerEntry) -> Result<(), RegistryError> {
        self.insert(entry, None)
    }

    /// Adds or renews `entry` for `ttl`: unless renewed, it lapses after that. Renewing also
    /// clears a failure mark (the worker proved it is alive).
    pub fn register_for(&self, entry: ServerEntry, ttl: Duration) -> Result<(), RegistryError> {
        self.insert(entry, Some(Instant::now() + ttl))
    }

    /// `entry` checked and normalised as the registry would hold it (services upper case,
    /// sorted, without repeats), or why it would be refused.
    pub fn validate(mut entry: ServerEntry) -> Result<ServerEntry, RegistryError> {
        if !is_valid_name(&entry.name) {
            return Err(RegistryError::InvalidName(entry.name));
        }
        if entry.services.len() > MAX_SERVICES_PER_SERVER {
            return Err(RegistryError::TooManyServices);
        }
        if let Some(bad) = entry.services.iter().find(|service| !is_valid_name(service)) {
            return Err(RegistryError::InvalidName(bad.clone()));
        }
        entry.services = entry.services.iter().map(|service| service.to_ascii_uppercase()).collect();
        entry.services.sort();
        entry.services.dedup();
        Ok(entry)
    }

    fn insert(&self, entry: ServerEntry, expires: Option<Instant>) -> Result<(), RegistryError> {
        let entry = Self::validate(entry)?;
        let mut table = self.lock();
        table.purge(Instant::now());
        table.put(Registration { entry, expires, failed: false, shared: false })
    }

    /// Adds or replaces `entry` as an entry of the shared registry (it was registered or
    /// renewed there, which also clears a failure mark): it stays until
    /// [`Registry::remove_shared`] or [`Registry::replace_shared`] takes it away. A server of
    /// this process with the same name (the main server itself, in-process workers) wins: it
    /// is not replaced.
    pub fn upsert_shared(&self, entry: ServerEntry) -> Result<(), RegistryError> {
        self.put_shared(entry, false)
    }

    fn put_shared(&self, entry: ServerEntry, keep_mark: bool) -> Result<(), RegistryError> {
        let entry = Self::validate(entry)?;
        let mut table = self.lock();
        table.purge(Instant::now());
        let mut failed = false;
        if let Some(existing) = table.servers.iter().find(|server| server.entry.name == entry.name) {
            if !existing.shared {
                return Ok(());
            }
            failed = keep_mark && existing.failed && existing.entry == entry;
        }
        table.put(Registration { entry, expires: None, failed, shared: true })
    }

    /// True when `name` is a server of this process (the main server, an in-process worker):
    /// not an entry of the shared registry nor a registration for a time.
    pub fn is_local(&self, name: &str) -> bool {
        self.lock().servers.iter().any(|server| server.entry.name == name && !server.shared && server.expires.is_none())
    }

    /// Removes the shared entry `name` (it left the shared registry); true if it was there.
    pub fn remove_shared(&self, name: &str) -> bool {
        let mut table = self.lock();
        let before = table.servers.len();
        table.servers.retain(|server| !(server.shared && server.entry.name == name));
        table.servers.len() != before
    }

    /// Makes the shared entries exactly `entries` (a fresh read of the shared registry): the
    /// others are removed, unchanged ones keep their failure marks. Entries that are refused
    /// are skipped and returned with the reason.
    pub fn replace_shared(&self, entries: Vec<ServerEntry>) -> Vec<(String, RegistryError)> {
        let names: BTreeSet<String> = entries.iter().map(|entry| entry.name.clone()).collect();
        {
            let mut table = self.lock();
            table.servers.retain(|server| !server.shared || names.contains(&server.entry.name));
        }
        let mut refused = Vec::new();
        for entry in entries {
            let name = entry.name.clone();
            if let Err(error) = self.put_shared(entry, true) {
                refused.push((name, error));
            }
        }
        refused
    }

    /// Removes the server called `name`; true if it was there.
    pub fn deregister(&self, name: &str) -> bool {
        let mut table = self.lock();
        let before = table.servers.len();
        table.servers.retain(|server| server.entry.name != name);
        table.servers.len() != before
    }

    /// Keeps the worker `name` from being picked after it failed a request, until
    /// [`Registry::mark_healthy`] or a renewed registration. True when this call marked it (it
    /// was registered and not marked yet), so that one caller starts probing it.
    pub fn mark_failed(&self, name: &str) -> bool {
        let mut table = self.lock();
        match table.servers.iter_mut().find(|server| server.entry.name == name) {
            Some(server) if !server.failed => {
                server.failed = true;
                true
            }
            _ => false,
        }
    }

    /// Lets the worker `name` be picked again (a health probe answered).
    pub fn mark_healthy(&self, name: &str) {
        let mut table = self.lock();
        if let Some(server) = table.servers.iter_mut().find(|server| server.entry.name == name) {
            server.failed = false;
        }
    }

    /// The live entry of the worker `name` and whether it is marked failed; `None` once it
    /// left the registry.
    pub fn state(&self, name: &str) -> Option<(ServerEntry, bool)> {
        let mut table = self.lock();
        table.purge(Instant::now());
        table
            .servers
            .iter()
            .find(|server| server.entry.name == name)
            .map(|server| (server.entry.clone(), server.failed))
    }

    /// Every live worker, with whether it is marked failed.
    pub fn workers(&self) -> Vec<(ServerEntry, bool)> {
        let mut table = self.lock();
        table.purge(Instant::now());
        table
            .servers
            .iter()
            .filter(|server| server.entry.role == Role::Worker)
            .map(|server| (server.entry.clone(), server.failed))
            .collect()
    }

    /// The addresses of every live server.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.lock().live().map(|server| server.address).collect()
    }

    /// All live servers, main server first, then in registration order.
    pub fn servers(&self) -> Vec<ServerEntry> {
        let mut servers: Vec<ServerEntry> = self.lock().live().cloned().collect();
        servers.sort_by_key(|server| server.role != Role::Main);
        servers
    }

    /// The main server's entry, if registered.
    pub fn main(&self) -> Option<ServerEntry> {
        self.lock().live().find(|server| server.role == Role::Main).cloned()
    }

    /// The live servers that offer `service`.
    pub fn lookup(&self, service: &str) -> Vec<ServerEntry> {
        self.lock().live().filter(|server| server.offers(service)).cloned().collect()
    }

    /// A live worker that offers `service`, is not marked failed and is not called `except`,
    /// rotating over them on successive calls for the same service.
    pub fn pick(&self, service: &str, except: Option<&str>) -> Option<ServerEntry> {
        let mut table = self.lock();
        table.purge(Instant::now());
        let Table { servers, picks } = &mut *table;
        let offering = || {
            servers.iter().filter(|server| {
                !server.failed
                    && server.entry.role == Role::Worker
                    && server.entry.offers(service)
                    && except.is_none_or(|except| server.entry.name != except)
            })
        };
        let count = offering().count();
        if count == 0 {
            return None;
        }
        let turn = match picks.get_mut(service) {
            Some(turn) => turn,
            None => picks.entry(service.to_ascii_uppercase()).or_insert(0),
        };
        let chosen = offering().nth(*turn % count).map(|server| server.entry.clone());
        *turn = turn.wrapping_add(1);
        chosen
    }

    /// Every service some live server offers.
    pub fn services(&self) -> BTreeSet<String> {
        self.lock().live().flat_map(|server| server.services.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests;
