//! [`LineWriter`]: log lines (the server's log on stderr, the download lines on the console, the
//! transfer log) gathered in memory and written in batches by a thread of their own.
//!
//! A line never waits for the terminal, the pipe or the disk: it is appended to a bounded buffer
//! (at most [`LIMIT`] bytes; a line that does not fit is dropped and counted). The thread sleeps
//! until a line arrives, then gathers for [`GATHER`] before it writes everything in one go, and
//! writes at most one batch every [`BUSY_GATHER`]. So a line after a quiet spell is out within
//! milliseconds, any line within [`BUSY_GATHER`], and a busy server wakes the thread about 20
//! times a second instead of once per line: with a queue per line (tracing-appender's,
//! and our own channels before), every download of a small file woke two threads, and those
//! wake-ups were a tenth of the server's CPU per file; at 5 ms for every batch, the threads'
//! 400 wake-ups a second still cost small downloads 3.5% (BENCHMARKS.md, fourteenth round).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the thread gathers lines after the first one wakes it.
pub const GATHER: Duration = Duration::from_millis(5);

/// The least time between two batches (a line waits at most this long).
pub const BUSY_GATHER: Duration = Duration::from_millis(50);

/// The most bytes waiting to be written; lines beyond it are dropped and counted.
pub const LIMIT: usize = 4 << 20;

/// What a batch kept after a burst: more is given back to the allocator.
const KEPT_CAPACITY: usize = 64 << 10;

/// How long [`LineWriter::close`] waits for the last lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What the writer thread tells its owner about (on the writer thread, with no lock held).
#[derive(Debug)]
pub enum Report {
    /// This many lines found the buffer full and were dropped.
    Dropped(u64),
    /// Writing a batch failed.
    Failed(io::Error),
}

/// A sink the thread writes to.
pub type Sink = Box<dyn Write + Send>;

/// Lines written by a thread of their own, in batches (see the module's documentation).
pub struct LineWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (a line while it sleeps, a new sink, closing).
    wake: Condvar,
    /// Tells [`LineWriter::close`] that the thread has stopped.
    stopped: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    dropped: u64,
    /// The thread waits for lines: the next line must wake it.
    asleep: bool,
    /// A sink to write to from the next batch on (the transfer log reopened after rotation).
    replacement: Option<Sink>,
    closing: bool,
    stopped: bool,
}

impl std::fmt::Debug for LineWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LineWriter").finish_non_exhaustive()
    }
}

impl LineWriter {
    /// Starts the thread `name` writing to `sink`; `report` hears of dropped lines and failed
    /// writes.
    pub fn spawn(name: &str, sink: Sink, report: impl Fn(Report) + Send + 'static) -> io::Result<LineWriter> {
        let shared = Arc::new(Shared { state: Mutex::default(), wake: Condvar::new(), stopped: Condvar::new() });
        let thread_shared = shared.clone();
        std::thread::Builder::new().name(name.into()).spawn(move || run(&thread_shared, sink, &report))?;
        Ok(LineWriter { shared })
    }

    /// Appends `line` (which ends with its own newline) for the thread to write, or drops and
    /// counts it when [`LIMIT`] bytes are already waiting.
    pub fn write_line(&self, line: &[u8]) {
        self.append(&[line]);
    }

    /// [`LineWriter::write_line`] of `text` and a newline.
    pub fn write_text_line(&self, text: &str) {
        self.append(&[text.as_bytes(), b"\n"]);
    }

    /// Appends `parts`, one line, as a whole or not at all.
    fn append(&self, parts: &[&[u8]]) {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        let mut state = lock(&self.shared.state);
        if state.pending.len() + length > LIMIT {
            state.dropped += 1;
            return;
        }
        for part in parts {
            state.pending.extend_from_slice(part);
        }
        let wake = std::mem::replace(&mut state.asleep, false);
        // Woken with the lock still held, the thread would block on it at once and need a
        // second wake-up when it is released.
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Writes the next batches to `sink` instead (the lines waiting now still go to the old one).
    pub fn replace_sink(&self, sink: Sink) {
        lock(&self.shared.state).replacement = Some(sink);
        self.shared.wake.notify_one();
    }

    /// Writes what is waiting and stops the thread (waiting at most a second for a slow sink);
    /// later lines are kept but never written.
    pub fn close(&self) {
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut state = lock(&self.shared.state);
        state.closing = true;
        self.shared.wake.notify_one();
        while !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.shared.stopped.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// The tracing subscriber's writer: every formatted event is one line of the [`LineWriter`], or
/// is written straight to stderr when there is none (its thread could not be started).
#[derive(Clone, Debug)]
pub struct LogLines(pub Option<Arc<LineWriter>>);

/// One event's writer (tracing-subscriber writes each event with one `write_all`).
#[derive(Debug)]
pub struct LogLine<'a>(Option<&'a LineWriter>);

impl Write for LogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.0 {
            Some(writer) => {
                writer.write_line(bytes);
                Ok(bytes.len())
            }
            None => io::stderr().write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogLines {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine(self.0.as_deref())
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The writer thread: sleeps until there are lines, gathers, writes them in one go.
fn run(shared: &Shared, mut sink: Sink, report: &dyn Fn(Report)) {
    let mut batch = Vec::new();
    let mut last_batch: Option<Instant> = None;
    loop {
        let mut state = lock(&shared.state);
        while state.pending.is_empty() && state.replacement.is_none() && !state.closing {
            state.asleep = true;
            state = shared.wake.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.asleep = false;
        let now = Instant::now();
        let until = last_batch.map_or(now + GATHER, |last| (last + BUSY_GATHER).max(now + GATHER));
        // Lines appended meanwhile do not wake the thread (it is not `asleep`); closing does.
        state = match shared.wake.wait_timeout_while(state, until - now, |state| !state.closing) {
            Ok((state, _)) => state,
            Err(poisoned) => poisoned.into_inner().0,
        };
        std::mem::swap(&mut batch, &mut state.pending);
        let dropped = std::mem::take(&mut state.dropped);
        let replacement = state.replacement.take();
        let closing = state.closing;
        drop(state);

        if !batch.is_empty() {
            if let Err(error) = sink.write_all(&batch).and_then(|()| sink.flush()) {
                report(Report::Failed(error));
            }
            last_batch = Some(Instant::now());
        }
        if dropped > 0 {
            report(Report::Dropped(dropped));
        }
        if let Some(replacement) = replacement {
            sink = replacement;
        }
        batch.clear();
        if batch.capacity() > KEPT_CAPACITY {
            batch = Vec::new();
        }
        if closing {
            let mut state = lock(&shared.state);
            if state.pending.is_empty() {
                state.stopped = true;
                shared.stopped.notify_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that keeps what it is given, and counts its writes.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut kept = self.0.lock().expect("lock");
            kept.0.extend_from_slice(bytes);
            kept.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that blocks every write until `open` is set.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Kept);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (open, changed) = &*self.0;
            let mut open = open.lock().expect("lock");
            while !*open {
                open = changed.wait(open).expect("wait");
            }
            self.1.write(bytes)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn reports() -> (Arc<Mutex<Vec<String>>>, impl Fn(Report) + Send + 'static) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, move |report: Report| sink.lock().expect("lock").push(format!("{report:?}")))
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes_and_close_writes_the_rest() {
        let kept = Kept::default();
        let (seen, report) = reports();
        let writer = LineWriter::spawn("test-lines", Box::new(kept.clone()), report).expect("spawn");
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let writer = &writer;
                scope.spawn(move || {
                    for line in 0..2_000 {
                        writer.write_line(format!("{thread} {line}\n").as_bytes());
                    }
                });
            }
        });
        writer.close();
        let (bytes, writes) = kept.0.lock().expect("lock").clone();
        let text = String::from_utf8(bytes).expect("UTF-8");
        for thread in 0..4 {
            let lines: Vec<usize> = text
                .lines()
                .filter_map(|line| line.split_once(' '))
                .filter(|(from, _)| *from == thread.to_string())
                .map(|(_, line)| line.parse().expect("number"))
                .collect();
            assert_eq!(lines, (0..2_000).collect::<Vec<_>>(), "thread {thread}: every line, in order");
        }
        assert!(writes < 1_000, "8,000 lines in {writes} writes");
        assert!(seen.lock().expect("lock").is_empty(), "nothing dropped or failed");
    }

    #[test]
    fn lines_that_keep_coming_are_written_at_most_once_per_busy_gather() {
        let kept = Kept::default();
        let (seen, report) = reports();
        let writer = LineWriter::spawn("test-busy", Box::new(kept.clone()), report).expect("spawn");
        // A line every millisecond or so for 300 ms: at 5 ms per batch, some 56 writes.
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < BUSY_GATHER * 6 {
            writer.write_line(format!("{sent}\n").as_bytes());
            sent += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = started.elapsed();
        writer.close();
        let (bytes, writes) = kept.0.lock().expect("lock").clone();
        let lines: Vec<usize> =
            String::from_utf8(bytes).expect("UTF-8").lines().map(|line| line.parse().expect("number")).collect();
        assert_eq!(lines, (0..sent).collect::<Vec<_>>(), "every line, in order");
        // One batch GATHER after the first line, then one per BUSY_GATHER, and the one `close` writes.
        let most = (took.as_millis() / BUSY_GATHER.as_millis()) as usize + 2;
        assert!(writes <= most, "{sent} lines in {writes} writes over {took:?}: at most {most}");
        assert!(seen.lock().expect("lock").is_empty(), "nothing dropped or failed");
    }

    #[test]
    fn a_sink_that_does_not_drain_bounds_the_buffer_and_the_drops_are_reported() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let kept = Kept::default();
        let (seen, report) = reports();
        let writer =
            LineWriter::spawn("test-stuck", Box::new(Stuck(gate.clone(), kept.clone())), report).expect("spawn");
        writer.write_line(b"first\n");
        std::thread::sleep(GATHER * 4);
        let line = vec![b'x'; 1023];
        let lines = 3 * LIMIT / 1024;
        for _ in 0..lines {
            let mut line = line.clone();
            line.push(b'\n');
            writer.write_line(&line);
        }
        assert!(lock(&writer.shared.state).pending.len() <= LIMIT, "the buffer stays within its limit");
        *gate.0.lock().expect("lock") = true;
        gate.1.notify_all();
        writer.close();
        let written = kept.0.lock().expect("lock").0.len();
        assert!(written <= LIMIT + 6, "{written} bytes written");
        assert!(written >= LIMIT / 2, "what fitted was written: {written} bytes");
        let seen = seen.lock().expect("lock");
        let dropped: u64 = seen
            .iter()
            .filter_map(|report| report.strip_prefix("Dropped(")?.strip_suffix(")")?.parse::<u64>().ok())
            .sum();
        assert_eq!(dropped as usize + (written - 6) / 1024, lines, "every line either written or counted: {seen:?}");
    }

    #[test]
    fn a_replaced_sink_gets_the_lines_after_the_replacement() {
        let (old, new) = (Kept::default(), Kept::default());
        let (_, report) = reports();
        let writer = LineWriter::spawn("test-reopen", Box::new(old.clone()), report).expect("spawn");
        writer.write_line(b"before\n");
        writer.wait_until_written();
        writer.replace_sink(Box::new(new.clone()));
        writer.wait_until_written();
        writer.write_line(b"after\n");
        writer.close();
        assert_eq!(old.0.lock().expect("lock").0, b"before\n");
        assert_eq!(new.0.lock().expect("lock").0, b"after\n");
    }

    impl LineWriter {
        /// Waits until everything written so far is out (tests only).
        fn wait_until_written(&self) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let state = lock(&self.shared.state);
                if state.pending.is_empty() && state.replacement.is_none() && state.asleep {
                    return;
                }
                drop(state);
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("the writer did not catch up within 5 s");
        }
    }
}
