//! Contains shared code for the PASV and EPSV commands.

use crate::{
    auth::UserDetail,
    server::{
        ControlChanErrorKind,
        chancomms::{PortAllocationError, SwitchboardMessage, SwitchboardSender, TransferCmd},
        controlchan::{Reply, ReplyCode, error::ControlChanError, handler::CommandContext},
        data_stream::DataStream,
        datachan,
        session::{NO_PLACE_LEFT, NoPlaceLeft, Place, Session, SharedSession},
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::{
    fmt::Debug,
    io,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    time::Duration,
};
use tokio::sync::{
    mpsc::{Receiver, Sender, channel},
    oneshot,
};

const BIND_RETRIES: u8 = 10;

#[async_trait]
pub(crate) trait LegacyReplyProducer<Storage, User>: Send + Sync + Debug
where
    Storage: StorageBackend<User> + 'static,
    User: UserDetail + 'static,
{
    async fn build_reply(&self, args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError>;

    /// Refused once the client sent `EPSV ALL` (`PASV` is; `EPSV` is not).
    fn refused_after_epsv_all(&self) -> bool {
        false
    }
}

/// The reply to `PASV`, `PORT` and `EPRT` after `EPSV ALL` (RFC 2428: the server MUST refuse
/// them; vsftpd answers `550` too).
pub(crate) fn refused_after_epsv_all() -> Reply {
    Reply::new(ReplyCode::FileError, "EPSV ALL is in effect: use EPSV")
}

/// A listening socket on a random port of `passive_ports` (SO_REUSEADDR: the ports of earlier
/// data connections are in TIME_WAIT), non-blocking and not registered with the runtime.
#[tracing_attributes::instrument]
pub(crate) fn try_port_range(local_addr: SocketAddr, passive_ports: RangeInclusive<u16>) -> io::Result<std::net::TcpListener> {
    let ip = local_addr.ip();
    let rng_length = passive_ports.end() - passive_ports.start() + 1;

    first_that_listens(BIND_RETRIES - 1, || {
        let port = random_u32() % rng_length as u32 + *passive_ports.start() as u32;
        listen_on(SocketAddr::new(ip, port as u16))
    })
}

/// The first listener `attempt` gives in at most `tries` attempts. `attempt` says `Ok(None)`
/// for a port that is taken, whether it did not bind or bound and could not listen: two
/// passive ports' sockets (`SO_REUSEADDR`, as ours are) that pick the same port at the same
/// instant both bind, and the second `listen` fails with `EADDRINUSE`; that `PASV` used to be
/// answered `425` at once. An error (no socket could be made) ends the attempts.
fn first_that_listens(tries: u8, mut attempt: impl FnMut() -> io::Result<Option<std::net::TcpListener>>) -> io::Result<std::net::TcpListener> {
    for _ in 0..tries {
        if let Some(listener) = attempt()? {
            return Ok(listener);
        }
    }
    // (Made only here: it used to be made, and dropped, by every `PASV`, two allocations.)
    Err(io::Error::new(io::ErrorKind::AddrInUse, "no free port in the passive port range"))
}

/// A passive port's listener on `address`, or `None` when the port is taken (see
/// [`first_that_listens`]).
fn listen_on(address: SocketAddr) -> io::Result<Option<std::net::TcpListener>> {
    let s = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM.nonblocking().cloexec(), None)?;
    s.set_reuse_address(true)?;
    match s.bind(&address.into()).and_then(|()| s.listen(PASSIVE_BACKLOG)) {
        Ok(()) => Ok(Some(s.into())),
        Err(_) => Ok(None),
    }
}

/// The listen queue of a passive port: the client's data connection needs one place; the rest
/// bounds what strangers can queue there before the transfer command comes.
const PASSIVE_BACKLOG: i32 = 64;

/// Random bytes from the operating system, taken 4 at a time for passive ports.
const RANDOM_POOL: usize = 256;

thread_local! {
    /// This thread's random bytes not yet used, and how many of them are used.
    static RANDOM: std::cell::RefCell<([u8; RANDOM_POOL], usize)> = const { std::cell::RefCell::new(([0; RANDOM_POOL], RANDOM_POOL)) };
}

/// A random number from the operating system's generator, as unpredictable as one asked for
/// alone: the bytes are fetched 256 at a time (one `getrandom` call per 64 passive ports
/// instead of one per port) and each is used once.
fn random_u32() -> u32 {
    RANDOM.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if *used + 4 > RANDOM_POOL {
            getrandom::fill(bytes).expect("Error generating random port");
            *used = 0;
        }
        let drawn = u32::from_ne_bytes([bytes[*used], bytes[*used + 1], bytes[*used + 2], bytes[*used + 3]]);
        bytes[*used..*used + 4].fill(0);
        *used += 4;
        drawn
    })
}

// modifies the session by adding channels that are used to communicate with the data connection
// processing loop (which answers on the session's own `control_msg_tx`, the control loop's
// channel for transfer messages).
#[tracing_attributes::instrument]
pub(crate) async fn setup_inter_loop_comms<S, U>(session: SharedSession<S, U>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    install_inter_loop_comms(&mut *session.lock().await);
}

/// The channels between the control loop and the next data connection's task, made new.
fn install_inter_loop_comms<S, U>(session: &mut Session<S, U>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
{
    let (cmd_tx, cmd_rx): (Sender<TransferCmd>, Receiver<TransferCmd>) = channel(1);
    let (data_abort_tx, data_abort_rx): (Sender<()>, Receiver<()>) = channel(1);
    session.data_cmd_tx = Some(cmd_tx);
    session.data_cmd_rx = Some(cmd_rx);
    session.data_abort_tx = Some(data_abort_tx);
    session.data_abort_rx = Some(data_abort_rx);
}

// For legacy mode we choose a data port here and start listening on it while letting the control
// channel know (via method return) what the address is that the client should connect to.
//
// The session is locked twice: for the place and the listener, and for the channels and the
// passive task (four times before: each lock and unlock of the session's mutex cost about 230
// instructions, and the channels were visible to the session's other tasks before the task
// that serves them was recorded). Not across `build_reply`, which may resolve a host name.
#[tracing_attributes::instrument]
pub(crate) async fn handle_legacy_mode<S, U, T>(cmd: &T, args: CommandContext<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
    T: LegacyReplyProducer<S, U>,
{
    // A place for the listener (if data connections are limited): the unused listener's it
    // replaces, or a new one; then the listener.
    let (place, reused, listener) = {
        let mut session = args.session.lock().await;
        if session.epsv_all && cmd.refused_after_epsv_all() {
            return Ok(refused_after_epsv_all());
        }
        let reused = session.passive_place.is_some();
        let place = match session.data_connection_place() {
            Ok(place) => place,
            Err(NoPlaceLeft) => return Ok(Reply::new(ReplyCode::CantOpenDataConnection, NO_PLACE_LEFT)),
        };
        let listener = match session.binder {
            Some(ref mut binder) => match binder.bind(args.local_addr.ip(), args.passive_ports.clone()).await {
                // The runtime is not to watch the listener (see `serve_passive`).
                Ok(socket) => socket.listen(PASSIVE_BACKLOG as u32).and_then(|listener| listener.into_std()),
                Err(err) => Err(err),
            },
            _ => try_port_range(args.local_addr, args.passive_ports.clone()),
        };
        match listener {
            Ok(listener) => (place, reused, listener),
            Err(_) => {
                // A place taken from the session's unused listener stays its own (see `give_back`).
                if reused {
                    session.passive_place = place;
                }
                return Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established"));
            }
        }
    };

    let port = listener.local_addr()?.port();

    let reply = cmd.build_reply(&args, port).await?;
    if !reply.is_positive() {
        give_back(&args.session, place, reused).await;
    } else {
        let session = args.session.clone();
        // The session stays locked until the new task's abort handle is in it: the task checks
        // that it is the session's passive task before it takes the channels.
        let mut locked = session.lock().await;
        install_inter_loop_comms(&mut locked);
        let client = PassiveClient {
            control_ip: locked.source.ip().to_canonical(),
            proxy_ip: locked.proxy,
        };
        let timeout = locked.data_connection_timeout;
        // Boxed: the task's future is kilobytes (see `serve_passive`), and spawning moves it
        // into place several times; a box is moved as a pointer.
        let serving = tokio::spawn(Box::pin(serve_passive(listener, args.session, args.logger, timeout, client)));
        // One passive listener per session: the previous one (if its client never came) closes.
        if let Some(previous) = locked.passive_accept.replace(serving.abort_handle()) {
            previous.abort();
        }
        locked.passive_place = place;
    }

    Ok(reply)
}

/// A place taken from the session's unused passive listener (`reused`) goes back to it when the
/// listener that was to replace it is refused after all (a new place is simply let go).
async fn give_back<S, U>(session: &SharedSession<S, U>, place: Option<Place>, reused: bool)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
{
    if reused {
        session.lock().await.passive_place = place;
    }
}

/// Who may open a passive data connection: the control connection's client, or the proxy it
/// came through (libunftp patch 20).
#[derive(Clone, Copy, Debug)]
struct PassiveClient {
    control_ip: IpAddr,
    proxy_ip: Option<IpAddr>,
}

impl PassiveClient {
    fn is(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        ip == self.control_ip || Some(ip) == self.proxy_ip
    }
}

/// True when the calling task is the session's passive task (its abort handle is the session's).
fn is_current<S, U>(session: &crate::server::session::Session<S, U>) -> bool
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
{
    session
        .passive_accept
        .as_ref()
        .is_some_and(|accepting| Some(accepting.id()) == tokio::task::try_id())
}

/// The life of one passive data connection, in one task. The runtime does not watch the
/// listener, so a client connecting wakes nobody: the task waits for the transfer command, then
/// accepts the client's connection (usually already in the listen queue), closing connections
/// from other addresses, and runs the transfer itself. Without a command within the data
/// connection timeout, or when a newer `PASV`, `EPSV` or `PORT` replaces it (aborting this task
/// or closing its command channel), the listener closes, and with it what waited in its queue.
async fn serve_passive<S, U>(listener: std::net::TcpListener, session: SharedSession<S, U>, logger: slog::Logger, timeout: Duration, client: PassiveClient)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    let (mut commands, mut aborts, mut control_msg_tx) = {
        let mut locked = session.lock().await;
        if !is_current(&locked) {
            return;
        }
        match (locked.data_cmd_rx.take(), locked.data_abort_rx.take(), locked.control_msg_tx.clone()) {
            (Some(commands), Some(aborts), Some(control_msg_tx)) => (commands, aborts, control_msg_tx),
            // Closed before this task ran (an `ABOR` right behind the `PASV`): so is the listener.
            _ => {
                locked.passive_accept = None;
                locked.passive_place = None;
                return;
            }
        }
    };
    // A command and an `ABOR` both waiting: the command came first, and the abort is its.
    let command = tokio::select! {
        biased;
        command = commands.recv() => match command {
            Some(command) => command,
            None => {
                slog::debug!(logger, "Passive data connection replaced before a transfer command");
                return;
            }
        },
        abort = aborts.recv() => {
            forget_passive(&session).await;
            if abort.is_some() {
                datachan::answer_nothing_to_abort(&control_msg_tx).await;
            }
            return;
        },
        () = tokio::time::sleep(timeout) => {
            slog::warn!(logger, "No transfer command within {} s of PASV/EPSV: the passive port is closed", timeout.as_secs());
            let reason = format!("no transfer command within {} s of PASV/EPSV", timeout.as_secs());
            datachan::answer_what_came_before_giving_up(Some(&mut commands), &mut aborts, &control_msg_tx, &reason).await;
            forget_passive(&session).await;
            return;
        }
    };
    // From now on a newer PASV, EPSV or PORT does not abort this transfer, and the listener's
    // place (if data connections are limited) is the transfer's until it ends.
    let _place = {
        let mut locked = session.lock().await;
        match is_current(&locked) {
            true => {
                locked.passive_accept = None;
                locked.passive_place.take()
            }
            false => None,
        }
    };
    // The answers are about this command (numbered by the control loop).
    control_msg_tx = control_msg_tx.for_transfer(command.number);
    let deadline = tokio::time::Instant::now() + timeout;
    let refusal = match accept_client(listener, deadline, &mut aborts, client, &logger).await {
        // Boxed: inline, the transfer's state would make this task's future (moved on every
        // spawn) kilobytes larger.
        Accepted::Socket(socket) => return Box::pin(datachan::run_command(logger, session, socket, command, aborts)).await,
        Accepted::Aborted => {
            return datachan::answer_aborted(&control_msg_tx).await;
        }
        Accepted::TimedOut => {
            slog::warn!(logger, "Client did not connect to data port in time");
            format!("no data connection within {} s", timeout.as_secs())
        }
        Accepted::Failed(err) => {
            slog::error!(logger, "Error waiting for data connection: {}", err);
            "accepting the data connection failed".to_string()
        }
    };
    datachan::answer_cant_open(&control_msg_tx, &refusal).await;
    datachan::answer_what_came_before_giving_up(None, &mut aborts, &control_msg_tx, &refusal).await;
}

/// Lets the session forget this task's passive port when it closes before a transfer command
/// (timed out or aborted): `STAT` then says there is no data connection, and a transfer command
/// is answered `425` at once. A newer `PASV`/`EPSV`/`PORT`'s port is left alone.
async fn forget_passive<S, U>(session: &SharedSession<S, U>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
{
    let mut locked = session.lock().await;
    if is_current(&locked) {
        locked.passive_accept = None;
        locked.passive_place = None;
        locked.data_cmd_tx = None;
        locked.data_abort_tx = None;
    }
}

/// How waiting for the client's data connection ended.
enum Accepted {
    Socket(DataStream),
    Aborted,
    TimedOut,
    Failed(io::Error),
}

/// The client's connection on `listener`: taken at once when it is waiting in the listen queue
/// (without registering the listener with the runtime), else awaited until `deadline` or an
/// `ABOR`. Connections from other addresses are closed.
async fn accept_client(
    listener: std::net::TcpListener,
    deadline: tokio::time::Instant,
    aborts: &mut Receiver<()>,
    client: PassiveClient,
    logger: &slog::Logger,
) -> Accepted {
    let refuse = |peer: SocketAddr| slog::warn!(logger, "Refused a data connection from {}: not the address of the control connection", peer);
    loop {
        match accept_now(&listener) {
            // Not registered with the runtime: a small transfer never has to wait for it.
            Ok((stream, peer)) if client.is(peer) => return Accepted::Socket(DataStream::plain(stream)),
            Ok((_, peer)) => refuse(peer),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) => return Accepted::Failed(err),
        }
    }
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => return Accepted::Failed(err),
    };
    loop {
        tokio::select! {
            accepted = tokio::time::timeout_at(deadline, listener.accept()) => match accepted {
                Ok(Ok((socket, peer))) if client.is(peer) => return Accepted::Socket(DataStream::registered(socket)),
                Ok(Ok((_, peer))) => refuse(peer),
                Ok(Err(err)) => return Accepted::Failed(err),
                Err(_) => return Accepted::TimedOut,
            },
            Some(()) = aborts.recv() => return Accepted::Aborted,
        }
    }
}

/// One connection from the non-blocking `listener`'s queue, non-blocking itself.
fn accept_now(listener: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    #[cfg(target_os = "linux")]
    let (socket, peer) = socket2::SockRef::from(listener).accept4(nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC)?;
    #[cfg(not(target_os = "linux"))]
    let (socket, peer) = {
        let (socket, peer) = socket2::SockRef::from(listener).accept()?;
        socket.set_nonblocking(true)?;
        (socket, peer)
    };
    let peer = peer.as_socket().ok_or_else(|| io::Error::other("a data connection that is not TCP/IP"))?;
    Ok((socket.into(), peer))
}

// For delegated mode, we prepare the session and let the listener loop know (via channel) that it
// should choose a data port and check for connections on it.
#[tracing_attributes::instrument]
pub(crate) async fn handle_delegated_mode<S, U>(args: CommandContext<S, U>, tx: SwitchboardSender<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    setup_inter_loop_comms(args.session.clone()).await;

    let (oneshot_tx, oneshot_rx) = oneshot::channel::<Result<Reply, PortAllocationError>>();

    tx.send(SwitchboardMessage::AssignDataPortCommand(args.session.clone(), oneshot_tx))
        .await
        .map_err(|_| ControlChanErrorKind::InternalServerError)?;

    match oneshot_rx.await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Could not allocate passive port")),
        Err(_) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Internal error: Channel closed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_of_the_range_is_bound_or_an_error_says_none_was_free() {
        let local: SocketAddr = "127.0.0.1:21".parse().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = try_port_range(local, port..=port).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        drop(taken);
        let listener = try_port_range(local, port..=port).unwrap();
        assert_eq!(listener.local_addr().unwrap(), SocketAddr::new(local.ip(), port));
    }

    #[test]
    fn a_port_that_is_taken_is_passed_over_and_a_failed_socket_ends_the_attempts() {
        let listener = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Taken twice (did not bind, or bound and could not listen), then a listener.
        let mut calls = 0;
        let found = first_that_listens(9, || {
            calls += 1;
            Ok((calls == 3).then(listener))
        });
        assert!(found.is_ok());
        assert_eq!(calls, 3);
        // Always taken: every try, then `AddrInUse`.
        let mut calls = 0;
        let error = first_that_listens(9, || {
            calls += 1;
            Ok(None)
        })
        .unwrap_err();
        assert_eq!((calls, error.kind()), (9, io::ErrorKind::AddrInUse));
        // No socket (say, no descriptor left): that error, at once.
        let mut calls = 0;
        let error = first_that_listens(9, || {
            calls += 1;
            Err(io::Error::from_raw_os_error(24))
        })
        .unwrap_err();
        assert_eq!((calls, error.raw_os_error()), (1, Some(24)));
    }

    /// Why a port that binds may still be taken: two sockets with `SO_REUSEADDR` bind one port
    /// while neither listens, and only the first `listen` succeeds.
    #[cfg(target_os = "linux")]
    #[test]
    fn two_passive_sockets_bind_one_port_and_only_the_first_listens() {
        let socket = || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_reuse_address(true).unwrap();
            s
        };
        let first = socket();
        first.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        let port = first.local_addr().unwrap().as_socket().unwrap();
        let second = socket();
        second.bind(&port.into()).unwrap();
        first.listen(PASSIVE_BACKLOG).unwrap();
        assert_eq!(second.listen(PASSIVE_BACKLOG).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        // `listen_on` reports a port another socket listens on as taken, not as an error.
        drop(second);
        assert!(listen_on(port).unwrap().is_none());
    }

    #[test]
    fn random_numbers_for_passive_ports_differ_across_pool_refills() {
        // Five pools' worth: every refill gives fresh bytes, never the used (zeroed) ones again.
        let drawn: Vec<u32> = (0..5 * RANDOM_POOL / 4).map(|_| random_u32()).collect();
        let distinct: std::collections::HashSet<u32> = drawn.iter().copied().collect();
        // 320 draws of 32 bits: a repeat has a chance of about 1 in 84,000.
        assert!(distinct.len() >= drawn.len() - 1, "{} distinct of {}", distinct.len(), drawn.len());
    }
}
