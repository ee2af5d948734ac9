//! The failed-login lockout, shared by every server of a process (libunftp's own policy lives
//! in each `Server`, and we build one per connection, so it never sees a second attempt).
//!
//! After `failed_logins` failures from one address within the lockout period, that address is
//! refused, right password or not, until the period has passed since its last failure; one user
//! name is locked the same way after ten times as many failures from any addresses (slowing a
//! guesser with many addresses, without letting one address lock another's account). Failed
//! proofs of the cluster secret count the same way.
//!
//! Attempts in flight count too: an address may have at most as many passwords being checked
//! at once as it has failures left ([`Lockout::begin`]), so parallel guesses never outnumber the
//! rule; a further attempt waits for one of them to end rather than being refused, so that a
//! client opening many connections at once with the right password (rclone's parallel
//! transfers, an office behind one address) is never taken for a guesser.
//!
//! Bounded: each table holds at most [`MAX_TRACKED`] entries; when a new one arrives with the
//! table full, entries whose period has passed are dropped, and if none has, an arbitrary one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Most addresses (and, separately, user names) tracked at once.
pub const MAX_TRACKED: usize = 65_536;
/// How many times `failed_logins` one user name may fail, from any addresses, before it is
/// locked.
pub const USER_FACTOR: u32 = 10;

#[derive(Clone, Copy, Debug)]
struct Record {
    /// Failed attempts within the period.
    failures: u32,
    /// Attempts being checked now.
    pending: u32,
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

    /// Failures within the period plus attempts in flight.
    fn in_play(&self, key: &K, period: Duration, now: Instant) -> u32 {
        self.records.get(key).map_or(0, |record| {
            let failures = if record.last + period > now { record.failures } else { 0 };
            failures + record.pending
        })
    }

    fn record(&mut self, key: &K, period: Duration, now: Instant) -> &mut Record {
        if !self.records.contains_key(key) && self.records.len() >= MAX_TRACKED {
            self.records.retain(|_, record| record.last + period > now);
            if self.records.len() >= MAX_TRACKED {
                if let Some(victim) = self.records.keys().next().cloned() {
                    self.records.remove(&victim);
                }
            }
        }
        let record = self.records.entry(key.clone()).or_insert(Record { failures: 0, pending: 0, last: now });
        if record.last + period <= now {
            record.failures = 0;
        }
        record
    }

    fn fail(&mut self, key: &K, period: Duration, now: Instant) {
        let record = self.record(key, period, now);
        record.failures += 1;
        record.last = now;
    }

    fn begin(&mut self, key: &K, period: Duration, now: Instant) {
        self.record(key, period, now).pending += 1;
    }

    /// An attempt in flight ended: a failure if it `failed`.
    fn end(&mut self, key: &K, failed: bool, period: Duration, now: Instant) {
        let Some(record) = self.records.get_mut(key) else { return };
        record.pending = record.pending.saturating_sub(1);
        if failed {
            self.fail(key, period, now);
        } else if record.failures == 0 && record.pending == 0 {
            self.records.remove(key);
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
    /// Woken when an attempt in flight ends.
    ended: Notify,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout { tables: Mutex::new((Table::new(), Table::new())), ended: Notify::new() }
    }
}

/// A login attempt in flight, counted by [`Lockout::begin`]: a failure when dropped, unless
/// [`Attempt::succeeded`] said otherwise.
#[derive(Debug)]
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    address: IpAddr,
    name: String,
    period: Duration,
    ended: bool,
}

impl Attempt<'_> {
    /// The login succeeded: the attempt leaves no failure behind.
    pub fn succeeded(mut self) {
        self.end(false);
    }

    fn end(&mut self, failed: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let now = Instant::now();
        {
            let mut tables = self.lockout.lock();
            tables.0.end(&self.address, failed, self.period, now);
            tables.1.end(&self.name, failed, self.period, now);
        }
        self.lockout.ended.notify_waiters();
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.end(true);
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

    /// Starts a login attempt by `address` as user `name`: `Err` with how long the address or
    /// the name stays locked when it is; else, once the attempts in flight plus the failures of
    /// the period leave room under the rule (waiting for attempts in flight to end), the
    /// attempt, which counts as a failure unless [`Attempt::succeeded`] is called.
    pub async fn begin(&self, address: IpAddr, name: &str, rule: LockoutRule) -> Result<Attempt<'_>, Duration> {
        let threshold = rule.failed_logins.max(1);
        let name_threshold = threshold.saturating_mul(USER_FACTOR);
        let name = name.to_string();
        loop {
            let ended = self.ended.notified();
            {
                let now = Instant::now();
                let mut tables = self.lock();
                let (by_address, by_name) = &mut *tables;
                let locked = by_address
                    .locked(&address, threshold, rule.period, now)
                    .or_else(|| by_name.locked(&name, name_threshold, rule.period, now));
                if let Some(left) = locked {
                    return Err(left);
                }
                if by_address.in_play(&address, rule.period, now) < threshold
                    && by_name.in_play(&name, rule.period, now) < name_threshold
                {
                    by_address.begin(&address, rule.period, now);
                    by_name.begin(&name, rule.period, now);
                    return Ok(Attempt { lockout: self, address, name, period: rule.period, ended: false });
                }
            }
            ended.await;
        }
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
    use std::sync::Arc;

    const RULE: LockoutRule = LockoutRule { failed_logins: 5, period: Duration::from_secs(300) };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// An attempt that fails.
    async fn fails(lockout: &Lockout, address: IpAddr, name: &str) -> Result<(), Duration> {
        lockout.begin(address, name, RULE).await.map(drop)
    }

    #[tokio::test(start_paused = true)]
    async fn five_failures_lock_an_address_for_the_period_and_others_stay_free() {
        let lockout = Lockout::default();
        for _ in 0..5 {
            assert!(fails(&lockout, ip(1), "alice").await.is_ok());
        }
        assert!(lockout.begin(ip(1), "alice", RULE).await.is_err(), "the sixth attempt is refused");
        assert!(lockout.locked(ip(1), RULE).is_some());
        lockout.begin(ip(2), "alice", RULE).await.expect("another address may still log in").succeeded();
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(lockout.locked(ip(1), RULE).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(lockout.locked(ip(1), RULE).is_none(), "the period has passed");
        assert!(lockout.begin(ip(1), "alice", RULE).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn successes_leave_nothing_and_parallel_attempts_wait_instead_of_being_refused() {
        let lockout = Arc::new(Lockout::default());
        for _ in 0..20 {
            lockout.begin(ip(1), "bob", RULE).await.expect("not locked").succeeded();
        }
        assert_eq!(lockout.tracked(), (0, 0), "successful logins leave nothing behind");
        // Five checks in flight: a sixth waits for one of them, and is not refused.
        let mut first = Vec::new();
        for _ in 0..5 {
            first.push(lockout.begin(ip(3), "carol", RULE).await.expect("room"));
        }
        let waiting = {
            let lockout = lockout.clone();
            tokio::spawn(async move { lockout.begin(ip(3), "carol", RULE).await.map(Attempt::succeeded) })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "no sixth check while five are in flight");
        for attempt in first {
            attempt.succeeded();
        }
        assert!(waiting.await.expect("task").is_ok(), "right passwords in parallel never lock an address");
        assert_eq!(lockout.tracked(), (0, 0));
        // Parallel wrong guesses never outnumber the rule: five fail, the sixth is refused.
        let mut guesses = Vec::new();
        for _ in 0..5 {
            guesses.push(lockout.begin(ip(4), "dan", RULE).await.expect("room"));
        }
        let sixth = {
            let lockout = lockout.clone();
            tokio::spawn(async move { lockout.begin(ip(4), "dan", RULE).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(guesses);
        assert!(sixth.await.expect("task").is_err(), "locked once the five failed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_name_locks_after_many_failures_from_many_addresses() {
        let lockout = Lockout::default();
        for last in 0..50u8 {
            assert!(fails(&lockout, IpAddr::from([10, 0, 0, last]), "dave").await.is_ok());
        }
        assert!(lockout.begin(IpAddr::from([10, 0, 1, 1]), "dave", RULE).await.is_err(), "50 failures lock dave");
        assert!(lockout.begin(IpAddr::from([10, 0, 1, 1]), "erin", RULE).await.is_ok(), "not everyone");
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
