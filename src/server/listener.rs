//! The accept loop of one server: it accepts TCP connections, builds one libunftp server per
//! connection ([`crate::server::build_server`]) and runs it; on shutdown it stops accepting,
//! gives open connections the grace period, then closes the ones still open.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::io::Write as _;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access::gate::Refusal;
use crate::access::{is_local, OPEN_MODE_REFUSAL};
use crate::cluster::secret::random_hex;
use crate::protocol::nonce_line;
use crate::server::auth::SessionAuth;
use crate::server::{build_server, ServerContext};
use crate::telemetry::metrics::RefusalReason;
use crate::telemetry::SessionTag;
use tracing::Instrument;

/// Serves `listener` until `shutdown` completes, then stops accepting, gives open connections
/// the grace period to finish, and closes the ones still open.
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>, shutdown: impl Future<Output = ()>) {
    let name = context.name().to_string();
    let (close_sender, close_receiver) = watch::channel(false);
    // Connections still sending their PROXY protocol header (each for at most 5 s).
    let headers = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HEADERS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if context.settings.proxy_protocol => {
                    let Ok(permit) = headers.clone().try_acquire_owned() else {
                        tracing::warn!(server = %name, %peer, "too many connections sending their PROXY header: refused");
                        let _ = stream.try_write(b"421 Too many connections opening, try again later\r\n");
                        continue;
                    };
                    let (context, close) = (context.clone(), close_receiver.clone());
                    connections.spawn(async move {
                        let Some((stream, client)) = proxied(&context, stream, peer).await else { return };
                        drop(permit);
                        run_connection(context, stream, client, true, close).await;
                    });
                }
                Ok((stream, peer)) => {
                    connections.spawn(run_connection(context.clone(), stream, peer, false, close_receiver.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(server = %name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(server = %name, open = connections.len(), "shutting down");
    let drained =
        tokio::time::timeout(context.settings.grace_period, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::info!(server = %name, open = connections.len(), "grace period over, closing connections");
        let _ = close_sender.send(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while connections.join_next().await.is_some() {} })
                .await;
    }
    tracing::info!(server = %name, "stopped");
}

/// Most connections reading their PROXY protocol header at once.
pub const MAX_PENDING_HEADERS: usize = 1024;

/// Reads the PROXY protocol header of a connection from the proxy at `proxy`: the connection
/// and the client's address, or `None` when it was refused (with a `421` saying why, and a log
/// line) or was the proxy's own health check (`LOCAL`: answered with a greeting and closed,
/// logged at debug level, so that a check every few seconds neither fills the log nor counts
/// as a session).
async fn proxied(context: &ServerContext, mut stream: TcpStream, proxy: SocketAddr) -> Option<(TcpStream, SocketAddr)> {
    match crate::server::proxy_header::read_client_address(&mut stream).await {
        Ok(Some(client)) => Some((stream, client)),
        Ok(None) => {
            tracing::debug!(server = %context.name(), %proxy, "proxy health check");
            let greeting = format!("220 ftpcalc {} ready (health check from the proxy)\r\n", context.name());
            let _ = stream.write_all(greeting.as_bytes()).await;
            None
        }
        Err(crate::server::proxy_header::ProxyHeaderError::Io(error)) => {
            // A proxy's plain TCP health check connects and closes: not worth more than a debug line.
            tracing::debug!(server = %context.name(), %proxy, %error, "connection closed before its PROXY header");
            None
        }
        Err(error) => {
            tracing::info!(server = %context.name(), %proxy, %error, "connection refused");
            context.settings.telemetry.metrics.connection_refused(context.name(), RefusalReason::ProxyHeader);
            let _ = stream.write_all(format!("421 {error}\r\n").as_bytes()).await;
            None
        }
    }
}

/// Runs one control connection until it ends or the server closes it: admission (connection
/// limits, lockout), the greeting's nonce, the libunftp session, the login timeout. `peer` is
/// the client's address; `proxied` says it came in a PROXY header (the socket's peer is the
/// proxy). A flag rather than the proxy's address: an async fn keeps its arguments for the
/// session's whole life, and idle sessions are counted in bytes (BENCHMARKS.md).
async fn run_connection(
    context: Arc<ServerContext>,
    stream: TcpStream,
    peer: SocketAddr,
    proxied: bool,
    close: watch::Receiver<bool>,
) {
    let policy = context.settings.policy.load_full();
    let gate = context.settings.gate.clone();
    let limits = &policy.limits;
    let per_address = (!context.trusts(peer.ip())).then_some(limits.max_connections_per_ip);
    let _admission = match gate.admit(peer.ip(), limits.max_connections, per_address) {
        Ok(admission) => admission,
        Err(refusal) => return refuse(&context, &stream, peer, &refusal),
    };
    if let Some(left) = gate.lockout.locked(peer.ip(), policy.lockout_rule()) {
        return refuse(&context, &stream, peer, &Refusal::LockedOut(left.as_secs().max(1)));
    }
    let telemetry = context.settings.telemetry.clone();
    let _open = telemetry.metrics.connection_opened(context.name());
    let tag = SessionTag::new(context.name(), peer);
    let span = tag.span.clone();
    let opened = std::time::Instant::now();
    run_session(context, stream, peer, proxied, close, tag).instrument(span.clone()).await;
    span.in_scope(|| tracing::info!(seconds = opened.elapsed().as_secs(), "session closed"));
}

/// The admitted connection: the greeting's nonce, the libunftp session, the login timeout.
async fn run_session(
    context: Arc<ServerContext>,
    mut stream: TcpStream,
    peer: SocketAddr,
    proxied: bool,
    mut close: watch::Receiver<bool>,
    tag: SessionTag,
) {
    let policy = context.settings.policy.load_full();
    let gate = context.settings.gate.clone();
    let limits = &policy.limits;
    let _ = stream.set_nodelay(true);
    let nonce = random_hex(16);
    let mut greeting = nonce_line(&nonce);
    if policy.accounts.is_open() && !is_local(peer.ip()) {
        greeting.push_str(&format!("220-{OPEN_MODE_REFUSAL}\r\n"));
    }
    if stream.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    // libunftp runs the session in a task of its own, which dropping our future would not stop;
    // a second handle on the socket lets us shut the socket down under it (login timeout,
    // shutdown). After the login it is kept only if the server must close sessions on stop.
    let (stream, handle) = match split_handle(stream) {
        Ok(split) => split,
        Err(error) => return tracing::warn!(%peer, %error, "cannot set up connection"),
    };
    let mut handle = Some(handle);
    let (auth, mut logged_in) =
        SessionAuth::new(policy.clone(), gate, peer, nonce, context.settings.telemetry.clone(), tag.clone());
    let server = match build_server(&context, &policy, peer, auth, tag) {
        Ok(server) => server,
        Err(error) => return tracing::error!(%peer, %error, "cannot build the FTP server"),
    };
    tracing::debug!("connection opened");
    // The libunftp `Server` and its start-up live in a box only until the session's task runs:
    // this task, one per connection, then holds a small future (libunftp patch 15; measured in
    // BENCHMARKS.md).
    // libunftp patch 20: behind a proxy the session knows the client's address, not the proxy's.
    let session = match Box::pin(server.spawn_service_from(stream, proxied.then_some(peer))).await {
        Ok(session) => session,
        Err(error) => return tracing::warn!(%peer, %error, "cannot start the FTP session"),
    };
    tokio::pin!(session);
    let login_deadline = tokio::time::sleep(limits.login_timeout);
    tokio::pin!(login_deadline);
    let mut waiting_for_login = true;
    loop {
        tokio::select! {
            _ = &mut session => return,
            _ = close.wait_for(|closing| *closing) => {
                if let Some(handle) = handle.take() {
                    let _ = handle.shutdown(std::net::Shutdown::Both);
                }
                return;
            }
            changed = &mut logged_in, if waiting_for_login => {
                waiting_for_login = false;
                if changed.is_ok() && !context.settings.close_on_stop {
                    handle = None;
                }
            }
            () = &mut login_deadline, if waiting_for_login => {
                tracing::info!(%peer, "closing a connection that did not log in in time");
                if let Some(handle) = handle.take() {
                    let _ = (&handle).write_all(b"421 Login timed out, closing the connection\r\n");
                    let _ = handle.shutdown(std::net::Shutdown::Both);
                }
                return;
            }
        }
    }
}

/// Tells the client why it is not served (`421`, RFC 959's "service not available, closing
/// control connection") and closes the connection, without waiting for a slow client.
fn refuse(context: &ServerContext, stream: &TcpStream, peer: SocketAddr, refusal: &Refusal) {
    tracing::info!(server = %context.name(), %peer, %refusal, "connection refused");
    let reason = match refusal {
        Refusal::Full(_) => RefusalReason::TooMany,
        Refusal::AddressFull(_) => RefusalReason::TooManyFromAddress,
        Refusal::LockedOut(_) => RefusalReason::LockedOut,
    };
    context.settings.telemetry.metrics.connection_refused(context.name(), reason);
    let _ = stream.try_write(format!("421 {refusal}\r\n").as_bytes());
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let handle = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, handle))
}
