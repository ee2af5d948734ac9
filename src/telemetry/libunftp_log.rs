//! The slog logger each of libunftp's servers writes through ([`logger`]).
//!
//! libunftp's records go through slog-stdlog to the `log` facade and from there to our tracing
//! subscriber, whose default filter keeps libunftp at `warn`: a record below that was built,
//! handed over and matched against the filter's targets before it was dropped (about 300
//! instructions each, two per small download: "Listening on passive port", "Successful
//! RETR"). With the default filter ([`only_warnings`]) they are dropped first, here.
//!
//! Each connection's server gets a root logger of its own, as with libunftp's default: every
//! command clones its session's logger, and one logger shared by all sessions would have all of
//! them count references on one cache line, passed between the CPUs.

use std::sync::OnceLock;

use slog::Drain;

/// The least severe level of libunftp's records that are passed on, when it is not every level.
static LEVEL: OnceLock<slog::Level> = OnceLock::new();

/// libunftp's records below `warn` are dropped before they reach the `log` facade (the log
/// filter is the default, which says so). To be called before the first server is built.
pub fn only_warnings() {
    let _ = LEVEL.set(slog::Level::Warning);
}

/// A new logger for one of libunftp's servers: to the `log` facade, from the level
/// [`only_warnings`] set if it did.
pub fn logger() -> slog::Logger {
    filtered(slog_stdlog::StdLog, LEVEL.get().copied().unwrap_or(slog::Level::Trace))
}

/// A logger that passes `drain` the records at `level` or more severe.
fn filtered<D>(drain: D, level: slog::Level) -> slog::Logger
where
    D: Drain<Ok = ()> + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe + 'static,
    D::Err: std::fmt::Debug,
{
    slog::Logger::root(drain.filter_level(level).fuse(), slog::o!())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the records it is given.
    struct Counting(Arc<AtomicUsize>);

    impl Drain for Counting {
        type Ok = ();
        type Err = slog::Never;

        fn log(&self, _: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    /// How many of the records `log` writes reach a drain behind [`filtered`] at `level`.
    fn given(level: slog::Level, log: impl Fn(&slog::Logger)) -> usize {
        let given = Arc::new(AtomicUsize::new(0));
        log(&filtered(Counting(given.clone()), level));
        given.load(Ordering::Relaxed)
    }

    #[test]
    fn records_below_the_level_never_reach_the_drain() {
        let below = given(slog::Level::Warning, |logger| {
            slog::trace!(logger, "t");
            slog::debug!(logger, "d");
            slog::info!(logger, "Listening on passive port {}:{}", "127.0.0.1", 50_000);
        });
        assert_eq!(below, 0);
        let at_or_above = given(slog::Level::Warning, |logger| {
            slog::warn!(logger, "w");
            slog::error!(logger, "e");
            slog::crit!(logger, "c");
        });
        assert_eq!(at_or_above, 3);
    }

    #[test]
    fn every_record_reaches_the_drain_at_trace() {
        let all = given(slog::Level::Trace, |logger| {
            slog::info!(logger, "i");
            slog::warn!(logger, "w");
        });
        assert_eq!(all, 2);
    }
}
