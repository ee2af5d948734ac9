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
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            counts: Mutex::default(),
            lockout: Lockout::default(),
            verifications: Arc::new(Semaphore::new(MAX_VERIFICATIONS)),
        }
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

/// Descriptors one control connection may hold at once: its socket, a passive listener, a data
/// socket and a file.
pub const DESCRIPTORS_PER_CONNECTION: u64 = 4;
/// Descriptors kept for everything else (listeners, logs, worker connections).
pub const DESCRIPTORS_RESERVED: u64 = 256;

/// `wanted` connections, or fewer if the descriptor limit `descriptors` cannot hold them.
pub fn connections_within(descriptors: u64, wanted: usize) -> usize {
    let room = descriptors.saturating_sub(DESCRIPTORS_RESERVED) / DESCRIPTORS_PER_CONNECTION;
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX)).max(1)
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
    fn the_connection_limit_fits_the_descriptors() {
        assert_eq!(connections_within(1024, 10_000), 192);
        assert_eq!(connections_within(1_048_576, 10_000), 10_000);
        assert_eq!(connections_within(10, 10), 1);
    }
}
