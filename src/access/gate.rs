//! What every server of a process shares to admit connections and logins: the count of open
//! control connections (in all and per client address), the failed-login [`Lockout`], and the
//! bound on password verifications running at once (each one is tens of milliseconds of CPU
//! and the hash's memory). One [`Gate`] per process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::access::lockout::Lockout;

/// Most password verifications running at once.
pub const MAX_VERIFICATIONS: usize = 4;

/// Why a connection was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server holds its maximum of connections.
    #[error("too many connections ({0}); try again later")]
    Full(usize),
    /// The client's address holds its maximum of connections.
    #[error("too many connections from your address ({0}); close some and try again")]
    AddressFull(usize),
    /// The client's address is locked out after failed logins.
    #[error("too many failed logins from your address; try again in {0} s")]
    LockedOut(u64),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The process-wide admission state.
#[derive(Debug)]
pub struct Gate {
    counts: Mutex<Counts>,
    /// Failed logins per address and user name.
    pub lockout: Lockout,
    /// Bounds the password verifications running at once.
    pub verifications: Arc<Semaphore>,
    /// The places for data connections (`max_transfers`), shared by every session's libunftp
    /// server (libunftp patch 61).
    pub transfers: Arc<Semaphore>,
}

impl Gate {
    /// A gate with room for `transfers` data connections at once.
    pub fn new(transfers: usize) -> Self {
        Gate {
            counts: Mutex::default(),
            lockout: Lockout::default(),
            verifications: Arc::new(Semaphore::new(MAX_VERIFICATIONS)),
            transfers: Arc::new(Semaphore::new(transfers.min(Semaphore::MAX_PERMITS))),
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(crate::config::Limits::default().max_transfers)
    }
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Gate>,
    /// The address counted against the per-address limit (`None`: exempt, not counted).
    address: Option<IpAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.total = counts.total.saturating_sub(1);
        let Some(address) = self.address else { return };
        if let Some(count) = counts.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                counts.per_address.remove(&address);
            }
        }
    }
}

impl Gate {
    /// Admits a connection from `address` if the server has room for it: at most `max` in all
    /// and `per_address` from one address (`None`: the address is exempt from that limit, and
    /// its connections do not count against it: the main server's pool to in-process workers
    /// comes from the same loopback address as local clients).
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        max: usize,
        per_address: Option<usize>,
    ) -> Result<Admission, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.total >= max {
            return Err(Refusal::Full(max));
        }
        let from_address = counts.per_address.get(&address).copied().unwrap_or(0);
        if let Some(limit) = per_address.filter(|limit| from_address >= *limit) {
            return Err(Refusal::AddressFull(limit));
        }
        counts.total += 1;
        if per_address.is_none() {
            return Ok(Admission { gate: self.clone(), address: None });
        }
        *counts.per_address.entry(address).or_insert(0) += 1;
        Ok(Admission { gate: self.clone(), address: Some(address) })
    }

    /// Open connections in all.
    pub fn open_connections(&self) -> usize {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total
    }
}

/// Raises this process's soft limit on open descriptors to the hard limit (as nginx and vsftpd
/// do) and returns the new soft limit.
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Descriptors a control connection holds: its socket.
pub const DESCRIPTORS_PER_CONNECTION: u64 = 1;
/// Descriptors a data connection may hold at once, on top of its session's: a passive listener,
/// the data socket and a file (listener and socket overlap only while the client is accepted).
pub const DESCRIPTORS_PER_TRANSFER: u64 = 3;
/// Descriptors kept for everything else (listeners, logs, worker connections).
pub const DESCRIPTORS_RESERVED: u64 = 256;

/// How many control connections and data connections fit the descriptor limit `descriptors`:
/// `wanted` of each, or fewer. Data connections are bounded on their own (`max_transfers`), so
/// an idle session costs one descriptor; at most one session in four can have one when the
/// descriptors are short (as before data connections were bounded, when every session kept
/// room for one).
pub fn connections_within(descriptors: u64, wanted: Wanted) -> Wanted {
    let room = descriptors.saturating_sub(DESCRIPTORS_RESERVED);
    let fit = |count: u64| usize::try_from(count).unwrap_or(usize::MAX);
    let transfers = wanted.transfers.min(fit(room / (DESCRIPTORS_PER_CONNECTION + DESCRIPTORS_PER_TRANSFER))).max(1);
    let left = room.saturating_sub(transfers as u64 * DESCRIPTORS_PER_TRANSFER) / DESCRIPTORS_PER_CONNECTION;
    Wanted { connections: wanted.connections.min(fit(left)).max(1), transfers }
}

/// Control connections and data connections at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Control connections (`max_connections`).
    pub connections: usize,
    /// Data connections (`max_transfers`).
    pub transfers: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_in_all_and_per_address() {
        let gate = Arc::new(Gate::default());
        let one = IpAddr::from([127, 0, 0, 1]);
        let two = IpAddr::from([127, 0, 0, 2]);
        let first: Vec<Admission> = (0..3).map(|_| gate.admit(one, 5, Some(3)).expect("room")).collect();
        assert_eq!(gate.admit(one, 5, Some(3)).map(|_| ()), Err(Refusal::AddressFull(3)));
        let second = gate.admit(two, 5, Some(3)).expect("another address");
        let exempt = gate.admit(one, 5, None).expect("exempt from the per-address limit");
        assert_eq!(gate.admit(two, 5, Some(3)).map(|_| ()), Err(Refusal::Full(5)));
        drop(first);
        drop((second, exempt));
        assert_eq!(gate.open_connections(), 0);
        assert!(gate.counts.lock().expect("lock").per_address.is_empty(), "nothing left behind");
    }

    #[test]
    fn the_connection_limits_fit_the_descriptors() {
        let wanted = |connections, transfers| Wanted { connections, transfers };
        // Short of descriptors: as many sessions as data connections (192 each, as before).
        assert_eq!(connections_within(1024, wanted(10_000, 1_000)), wanted(192, 192));
        // This machine's 20,000: 1,000 data connections and 16,744 sessions.
        assert_eq!(connections_within(20_000, wanted(100_000, 1_000)), wanted(16_744, 1_000));
        assert_eq!(connections_within(20_000, wanted(10_000, 1_000)), wanted(10_000, 1_000));
        assert_eq!(connections_within(1_048_576, wanted(100_000, 1_000)), wanted(100_000, 1_000));
        assert_eq!(connections_within(10, wanted(10, 10)), wanted(1, 1));
        let huge = connections_within(u64::MAX, wanted(usize::MAX, usize::MAX));
        assert!(huge.connections > 1 << 60 && huge.transfers > 1 << 60, "no overflow: {huge:?}");
    }
}
