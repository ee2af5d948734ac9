//! The failed-login lockout, shared by every server of a process (libunftp's own policy lives
//! in each `Server`, and we build one per connection, so it never sees a second attempt).
//!
//! A failure is counted *before* the password is checked (and taken back on success), so that
//! attempts made in parallel count too. After `failed_logins` failures from one address within
//! the lockout period, that address is refused, right password or not, until the period has
//! passed since its last failure; one user name is locked the same way after ten times as many
//! failures from any addresses (slowing a guesser with many addresses, without letting one
//! address lock another's account). Failed proofs of the cluster secret count the same way.
//!
//! Bounded: each table holds at most [`MAX_TRACKED`] entries; when a new one arrives with the
//! table full, entries whose period has passed are dropped, and if none has, an arbitrary one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Most addresses (and, separately, user names) tracked at once.
pub const MAX_TRACKED: usize = 65_536;
/// How many times `failed_logins` one user name may fail, from any addresses, before it is
/// locked.
pub const USER_FACTOR: u32 = 10;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
struct Table<K> {
    records: HashMap<K, Record>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new() -> Self {
        Table { records: HashMap::new() }
    }

    fn locked(&self, key: &K, threshold: u32, period: Duration, now: Instant) -> Option<Duration> {
        let record = self.records.get(key)?;
        let until = record.last + period;
        (record.failures >= threshold && until > now).then(|| until - now)
    }

    fn fail(&mut self, key: &K, period: Duration, now: Instant) {
        if !self.records.contains_key(key) && self.records.len() >= MAX_TRACKED {
            self.records.retain(|_, record| record.last + period > now);
            if self.records.len() >= MAX_TRACKED {
                if let Some(victim) = self.records.keys().next().cloned() {
                    self.records.remove(&victim);
                }
            }
        }
        let record = self.records.entry(key.clone()).or_insert(Record { failures: 0, last: now });
        if record.last + period <= now {
            record.failures = 0;
        }
        record.failures += 1;
        record.last = now;
    }

    fn forgive(&mut self, key: &K) {
        if let Some(record) = self.records.get_mut(key) {
            record.failures = record.failures.saturating_sub(1);
            if record.failures == 0 {
                self.records.remove(key);
            }
        }
    }
}

/// The lockout's rules: how many failures, over how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutRule {
    /// Failures from one address that lock it.
    pub failed_logins: u32,
    /// How long failures count, and how long a lock lasts after the last one.
    pub period: Duration,
}

/// Failed logins per address and per user name.
#[derive(Debug)]
pub struct Lockout {
    tables: Mutex<(Table<IpAddr>, Table<String>)>,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout { tables: Mutex::new((Table::new(), Table::new())) }
    }
}

impl Lockout {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Table<IpAddr>, Table<String>)> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long `address` stays locked out, if it is.
    pub fn locked(&self, address: IpAddr, rule: LockoutRule) -> Option<Duration> {
        let now = Instant::now();
        self.lock().0.locked(&address, rule.failed_logins.max(1), rule.period, now)
    }

    /// Counts an attempt by `address` as user `name` as a failure, unless the address or the
    /// name is locked already (`Err` with how long it stays locked). Call
    /// [`Lockout::forgive`] when the attempt succeeds.
    pub fn attempt(&self, address: IpAddr, name: &str, rule: LockoutRule) -> Result<(), Duration> {
        let now = Instant::now();
        let threshold = rule.failed_logins.max(1);
        let mut tables = self.lock();
        let (by_address, by_name) = &mut *tables;
        let name = name.to_string();
        let locked = by_address
            .locked(&address, threshold, rule.period, now)
            .or_else(|| by_name.locked(&name, threshold.saturating_mul(USER_FACTOR), rule.period, now));
        if let Some(left) = locked {
            return Err(left);
        }
        by_address.fail(&address, rule.period, now);
        by_name.fail(&name, rule.period, now);
        Ok(())
    }

    /// Takes back the failure [`Lockout::attempt`] counted: the login succeeded.
    pub fn forgive(&self, address: IpAddr, name: &str) {
        let mut tables = self.lock();
        tables.0.forgive(&address);
        tables.1.forgive(&name.to_string());
    }

    /// Counts a failure of `address` that was not a login attempt (a wrong proof of the cluster
    /// secret); returns how long it is now locked, if it is.
    pub fn fail(&self, address: IpAddr, rule: LockoutRule) -> Option<Duration> {
        let now = Instant::now();
        let mut tables = self.lock();
        tables.0.fail(&address, rule.period, now);
        tables.0.locked(&address, rule.failed_logins.max(1), rule.period, now)
    }

    /// How many addresses and user names are tracked.
    pub fn tracked(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.0.records.len(), tables.1.records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: LockoutRule = LockoutRule { failed_logins: 5, period: Duration::from_secs(300) };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn five_failures_lock_an_address_for_the_period_and_others_stay_free() {
        let lockout = Lockout::default();
        for _ in 0..5 {
            assert!(lockout.attempt(ip(1), "alice", RULE).is_ok());
        }
        assert!(lockout.attempt(ip(1), "alice", RULE).is_err(), "the sixth attempt is refused");
        assert!(lockout.locked(ip(1), RULE).is_some());
        assert!(lockout.attempt(ip(2), "alice", RULE).is_ok(), "another address may still log in");
        lockout.forgive(ip(2), "alice");
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(lockout.locked(ip(1), RULE).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(lockout.locked(ip(1), RULE).is_none(), "the period has passed");
        assert!(lockout.attempt(ip(1), "alice", RULE).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn successes_take_their_attempt_back_and_parallel_attempts_count() {
        let lockout = Lockout::default();
        for _ in 0..20 {
            lockout.attempt(ip(1), "bob", RULE).expect("not locked");
            lockout.forgive(ip(1), "bob");
        }
        assert_eq!(lockout.tracked(), (0, 0), "successful logins leave nothing behind");
        let attempts: Vec<_> = (0..8).map(|_| lockout.attempt(ip(3), "carol", RULE)).collect();
        assert_eq!(attempts.iter().filter(|attempt| attempt.is_ok()).count(), 5, "in flight at once, still five");
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_name_locks_after_many_failures_from_many_addresses() {
        let lockout = Lockout::default();
        for last in 0..50u8 {
            assert!(lockout.attempt(IpAddr::from([10, 0, 0, last]), "dave", RULE).is_ok());
        }
        assert!(lockout.attempt(IpAddr::from([10, 0, 1, 1]), "dave", RULE).is_err(), "50 failures lock dave");
        assert!(lockout.attempt(IpAddr::from([10, 0, 1, 1]), "erin", RULE).is_ok(), "not everyone");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tables_stay_bounded_under_many_addresses() {
        let lockout = Lockout::default();
        for index in 0..(MAX_TRACKED as u32 + 1000) {
            let _ = lockout.fail(IpAddr::from(index.to_be_bytes()), RULE);
        }
        assert_eq!(lockout.tracked().0, MAX_TRACKED);
        for _ in 0..4 {
            assert!(lockout.fail(ip(9), RULE).is_none());
        }
        assert!(lockout.fail(ip(9), RULE).is_some(), "wrong proofs lock like wrong passwords");
    }
}
