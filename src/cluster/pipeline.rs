//! A pipelined control connection from the main server to a worker: requests of many sessions
//! share it. A request's line is queued with the place its reply goes to; a writer task sends
//! every line queued since it last ran in one write, and a reader task hands each reply to the
//! oldest request still waiting, since an FTP server answers a connection's commands in order
//! (libunftp patch 37 keeps that for pipelined commands, patch 39 sends their replies together).
//! Under load a worker then serves two sessions instead of one per request in flight, and reads
//! and answers many lines at a time. The main server's lines mostly leave one per write: the
//! runtime runs the writer right after the session that woke it. Holding lines back so that
//! they leave together (a yield, or Nagle's rule of one batch in flight) cut the CPU per request
//! by a fifth but raised the p99, so they are not held (BENCHMARKS.md, fifth round).
//!
//! A reply nobody waits for, a `421` (the worker closing the session: the requests still
//! waiting fail as [`ControlError::Dismissed`], never carried out), a malformed reply or the
//! end of the connection closes it: every request still waiting fails, and the pool
//! ([`crate::cluster::worker_client`]) opens a new connection for later ones.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use crate::cluster::control::{one_line, read_reply, Control, ControlError, Reply};
use crate::cluster::tls::Stream;

/// Most requests waiting on one connection (the worker client's limit on requests in flight
/// keeps it far lower; this bounds the queue whatever the caller does).
pub const MAX_WAITING: usize = 4096;

type Answer = oneshot::Sender<Result<Reply, ControlError>>;

#[derive(Debug, Default)]
struct State {
    /// Lines queued and not yet written.
    out: Vec<u8>,
    /// Where the replies go, oldest request first, and whether each request is quick.
    waiting: VecDeque<(Answer, bool)>,
    /// Requests waiting that are not quick.
    slow: usize,
    closed: bool,
}

impl State {
    /// Takes the oldest waiting request's answer.
    fn answer(&mut self) -> Option<Answer> {
        let (answer, quick) = self.waiting.pop_front()?;
        self.slow -= usize::from(!quick);
        Some(answer)
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake_writer: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the connection closed and fails every waiting request as not carried out: the
    /// worker closed the session with `reply` before reading them.
    fn dismiss(&self, reply: &Reply) {
        self.fail_waiting(|| ControlError::Dismissed(Box::new(reply.clone())));
    }

    /// Marks the connection closed and fails every waiting request (the first with `error`).
    fn close(&self, error: ControlError) {
        let mut error = Some(error);
        self.fail_waiting(|| error.take().unwrap_or(ControlError::Closed));
    }

    /// Marks the connection closed and fails every waiting request, oldest first, with what
    /// `error` gives; the writer is woken to end.
    fn fail_waiting(&self, mut error: impl FnMut() -> ControlError) {
        let waiting = {
            let mut state = self.state();
            state.closed = true;
            state.out = Vec::new();
            state.slow = 0;
            std::mem::take(&mut state.waiting)
        };
        for (answer, _) in waiting {
            let _ = answer.send(Err(error()));
        }
        self.wake_writer.notify_one();
    }
}

/// A logged-in control connection carrying requests of many callers at once.
#[derive(Debug)]
pub struct Pipeline {
    shared: Arc<Shared>,
    tasks: [AbortHandle; 2],
}

impl Pipeline {
    /// Takes over a logged-in connection and starts its writer and reader tasks.
    pub fn start(control: Control) -> Result<Pipeline, ControlError> {
        let (reader, writer) = tokio::io::split(control.into_stream()?);
        let shared = Arc::new(Shared::default());
        let reading = tokio::spawn(read_replies(shared.clone(), BufReader::new(reader)));
        let writing = tokio::spawn(write_requests(shared.clone(), writer));
        Ok(Pipeline { shared, tasks: [reading.abort_handle(), writing.abort_handle()] })
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.state().waiting.len()
    }

    /// True when every request in flight is quick (a quick request may queue behind them).
    pub fn only_quick(&self) -> bool {
        self.shared.state().slow == 0
    }

    /// False once the connection is closed (it takes no more requests).
    pub fn is_open(&self) -> bool {
        !self.shared.state().closed
    }

    /// Sends one command line (CR and LF in it are refused: they would smuggle a second
    /// command) and waits for its reply. `quick` says whether a quick request may queue behind
    /// this one ([`Pipeline::only_quick`]). `sent` is set once the line is queued: from then on
    /// the worker may see it.
    pub async fn request(&self, line: &str, quick: bool, sent: &AtomicBool) -> Result<Reply, ControlError> {
        one_line(line)?;
        let (answer, reply) = oneshot::channel();
        {
            let mut state = self.shared.state();
            if state.closed {
                return Err(ControlError::Closed);
            }
            if state.waiting.len() >= MAX_WAITING {
                return Err(ControlError::Malformed(format!("over {MAX_WAITING} requests waiting")));
            }
            state.out.extend_from_slice(line.as_bytes());
            state.out.extend_from_slice(b"\r\n");
            state.waiting.push_back((answer, quick));
            state.slow += usize::from(!quick);
            sent.store(true, Ordering::Relaxed);
        }
        self.shared.wake_writer.notify_one();
        reply.await.unwrap_or(Err(ControlError::Closed))
    }

    /// Closes the connection: waiting requests fail, the tasks end and the socket closes.
    pub fn close(&self) {
        self.shared.close(ControlError::Closed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes what is queued, all of it at once, each time it is woken; ends when the connection
/// closes.
async fn write_requests(shared: Arc<Shared>, mut writer: WriteHalf<Stream>) {
    let mut batch = Vec::new();
    loop {
        shared.wake_writer.notified().await;
        loop {
            {
                let mut state = shared.state();
                if state.closed {
                    return;
                }
                std::mem::swap(&mut state.out, &mut batch);
            }
            if batch.is_empty() {
                break;
            }
            let written = async {
                writer.write_all(&batch).await?;
                writer.flush().await
            };
            if let Err(error) = written.await {
                shared.close(ControlError::Io(error));
                return;
            }
            batch.clear();
        }
    }
}

/// Hands each reply to the oldest waiting request; closes the connection on anything else.
async fn read_replies(shared: Arc<Shared>, mut reader: BufReader<ReadHalf<Stream>>) {
    loop {
        let reply = match read_reply(&mut reader).await {
            // The worker is closing the session (idle timeout, shutdown): not an answer. It
            // comes only while the worker waits with nothing read, so no request still waiting
            // was carried out.
            Ok(reply) if reply.code == 421 => return shared.dismiss(&reply),
            other => other,
        };
        let answer = match &reply {
            Ok(_) => shared.state().answer(),
            Err(_) => None,
        };
        match (reply, answer) {
            (Ok(reply), Some(answer)) => {
                let _ = answer.send(Ok(reply));
            }
            (Ok(reply), None) => return shared.close(ControlError::Unexpected(reply)),
            (Err(error), _) => return shared.close(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    use tokio::net::TcpListener;

    /// A peer that greets, then answers each line `SITE ECHO x` with `200 x` in order and any
    /// other line with `odd` (closing the connection when `odd` is empty); it reports the bytes
    /// of its first read after the greeting.
    async fn peer(odd: &'static str) -> (SocketAddr, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (first_tx, first) = oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.write_all(b"220 hi\r\n").await.expect("greet");
            let mut chunk = vec![0u8; 64 * 1024];
            let read = stream.read(&mut chunk).await.expect("read");
            let _ = first_tx.send(String::from_utf8_lossy(&chunk[..read]).into_owned());
            let (reader, mut writer) = stream.split();
            let mut lines = (&chunk[..read]).chain(BufReader::new(reader)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match line.strip_prefix("SITE ECHO ") {
                    Some(word) => format!("200 {word}\r\n"),
                    None => odd.to_string(),
                };
                if answer.is_empty() || writer.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        (address, first)
    }

    async fn pipeline(address: SocketAddr) -> Arc<Pipeline> {
        Arc::new(Pipeline::start(Control::connect(address).await.expect("greeting")).expect("pipeline"))
    }

    async fn closes(pipeline: &Pipeline) -> bool {
        let wait = async {
            while pipeline.is_open() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.is_ok()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_queued_together_leave_in_one_write_and_each_gets_its_own_reply() {
        let (address, first) = peer("").await;
        let pipeline = pipeline(address).await;
        let mut requests = tokio::task::JoinSet::new();
        for n in 0..50 {
            let pipeline = pipeline.clone();
            requests.spawn(async move {
                let sent = AtomicBool::new(false);
                let reply = pipeline.request(&format!("SITE ECHO {n}"), true, &sent).await;
                (n, reply.expect("reply"), sent.load(Ordering::Relaxed))
            });
        }
        while let Some(outcome) = requests.join_next().await {
            let (n, reply, sent) = outcome.expect("request task");
            assert_eq!((reply.code, reply.text(), sent), (200, n.to_string(), true));
        }
        let first = first.await.expect("first read");
        assert_eq!(first.lines().count(), 50, "one write carried every queued line: {first:?}");
        assert_eq!(pipeline.in_flight(), 0);
        assert!(pipeline.is_open() && pipeline.only_quick());
    }

    #[tokio::test]
    async fn a_421_a_malformed_reply_or_the_end_fails_the_request_and_those_behind_it_and_closes() {
        for odd in ["421 Session timed out\r\n", "garbage\r\n", ""] {
            let (address, _) = peer(odd).await;
            let pipeline = pipeline(address).await;
            let sent = AtomicBool::new(false);
            assert_eq!(pipeline.request("SITE ECHO 1", true, &sent).await.expect("echo").text(), "1", "{odd:?}");
            let (first, second) = (AtomicBool::new(false), AtomicBool::new(false));
            let (failed, behind) =
                tokio::join!(pipeline.request("NOOP", true, &first), pipeline.request("SITE ECHO 2", true, &second));
            assert!(failed.is_err() && behind.is_err(), "{odd:?}: {failed:?} {behind:?}");
            if odd.starts_with("421") {
                let dismissed =
                    |outcome: &Result<Reply, ControlError>| matches!(outcome, Err(ControlError::Dismissed(_)));
                assert!(dismissed(&failed) && dismissed(&behind), "{failed:?} {behind:?}");
            }
            assert!(first.load(Ordering::Relaxed) && second.load(Ordering::Relaxed));
            assert!(!pipeline.is_open(), "{odd:?}");
            let late = AtomicBool::new(false);
            assert!(matches!(pipeline.request("SITE ECHO 3", true, &late).await, Err(ControlError::Closed)));
            assert!(!late.load(Ordering::Relaxed), "a closed connection sends nothing");
        }
    }

    #[tokio::test]
    async fn a_reply_nobody_asked_for_closes_the_connection() {
        let (address, _) = peer("200 one\r\n200 two\r\n").await;
        let pipeline = pipeline(address).await;
        let reply = pipeline.request("NOOP", true, &AtomicBool::new(false)).await.expect("the first answers");
        assert_eq!(reply.text(), "one");
        assert!(closes(&pipeline).await, "the second reply answers nobody");
    }

    #[tokio::test]
    async fn line_breaks_are_refused_and_close_ends_waiting_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.write_all(b"220 hi\r\n").await.expect("greet");
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await; // never answers
        });
        let pipeline = pipeline(address).await;
        let sent = AtomicBool::new(false);
        assert!(pipeline.request("NOOP\r\nDELE x", true, &sent).await.is_err(), "no command smuggling");
        assert!(!sent.load(Ordering::Relaxed));
        let waiting = {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.request("SITE ECHO 1", false, &AtomicBool::new(false)).await })
        };
        while pipeline.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!pipeline.only_quick(), "a request that is not quick is in flight");
        pipeline.close();
        let outcome = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(matches!(outcome, Ok(Ok(Err(ControlError::Closed)))), "{outcome:?}");
        assert!(!pipeline.is_open());
    }
}
