use crate::server::ControlChanSender;
use crate::server::switchboard::SocketAddrPair;
use crate::{
    auth::{AuthenticationPipeline, UserDetail},
    metrics::MetricsMiddleware,
    notification::{DataListener, PresenceListener},
    options::ActivePassiveMode,
    server::{
        Event, Session, SessionState,
        chancomms::{About, ControlChanMsg, Delivered, SwitchboardMessage, SwitchboardSender},
        controlchan::{
            Reply, ReplyCode,
            active_passive::ActivePassiveEnforcerMiddleware,
            auth::AuthMiddleware,
            codecs::FtpCodec,
            command::Command,
            commands,
            control_socket::{ControlSocket, SharedSocket},
            error::ControlChanError,
            error::ControlChanErrorKind,
            ftps::{FtpsControlChanEnforcerMiddleware, FtpsDataChanEnforcerMiddleware},
            handler::{CommandContext, CommandHandler},
            log::LoggingMiddleware,
            middleware::ControlChanMiddleware,
            notify::EventDispatcherMiddleware,
        },
        failed_logins::FailedLoginsCache,
        ftpserver::options::{FtpsRequired, PassiveHost, SiteCommandHandler, SiteMd5},
        session::SharedSession,
        shutdown,
        tls::FtpsConfig,
    },
    storage::{Metadata, StorageBackend},
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use rustls::ServerConnection;
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    ops::RangeInclusive,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::Mutex,
    task::JoinHandle,
};
use tokio_util::codec::Framed;

trait AsyncReadAsyncWriteSendUnpin: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadAsyncWriteSendUnpin for T {}

#[derive(Debug, Clone)]
pub struct Config<Storage, User>
where
    Storage: StorageBackend<User>,
    User: UserDetail,
{
    pub storage: Storage,
    pub greeting: &'static str,
    pub auth_pipeline: Arc<AuthenticationPipeline<User>>,
    pub passive_ports: RangeInclusive<u16>,
    pub passive_host: PassiveHost,
    pub ftps_config: FtpsConfig,
    pub collect_metrics: bool,
    pub idle_session_timeout: Duration,
    pub data_connection_timeout: Duration,
    /// The places for data connections all sessions share (see `ServerBuilder::data_connection_limit`).
    pub data_connections: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    pub logger: slog::Logger,
    pub ftps_required_control_chan: FtpsRequired,
    pub ftps_required_data_chan: FtpsRequired,
    pub site_md5: SiteMd5,
    pub site_handlers: Arc<HashMap<String, Arc<dyn SiteCommandHandler<Storage, User>>>>,
    // `None` unless the program set one (`notify_data`, `notify_presence`): without one, no
    // event is built.
    pub data_listener: Option<Arc<dyn DataListener>>,
    pub presence_listener: Option<Arc<dyn PresenceListener>>,
    pub active_passive_mode: ActivePassiveMode,
    pub binder: Arc<std::sync::Mutex<Option<Box<dyn crate::options::Binder>>>>,
}

/// Does TCP processing when an FTP client connects
#[tracing_attributes::instrument]
pub(crate) async fn spawn<Storage, User>(
    config: Config<Storage, User>,
    tcp_stream: TcpStream,
    client: Option<SocketAddr>,
    control_connection: Option<SocketAddrPair>,
    switchboard_msg_tx: Option<SwitchboardSender<Storage, User>>,
    mut shutdown: shutdown::Listener,
    failed_logins: Option<Arc<FailedLoginsCache>>,
) -> Result<JoinHandle<()>, ControlChanError>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    let Config {
        storage,
        auth_pipeline,
        passive_ports,
        passive_host,
        ftps_config,
        ftps_required_control_chan,
        ftps_required_data_chan,
        collect_metrics,
        idle_session_timeout,
        data_connection_timeout,
        data_connections,
        logger,
        site_md5: sitemd5,
        site_handlers,
        data_listener,
        presence_listener,
        active_passive_mode,
        binder,
        ..
    } = config;

    let tls_configured = matches!(ftps_config, FtpsConfig::On { .. });
    let storage_features = storage.supported_features();
    let (control_msg_tx, mut control_msg_rx) = crate::server::chancomms::control_chan();
    let local_addr = tcp_stream.local_addr()?;
    let peer = tcp_stream.peer_addr()?;
    // Shared with the data channel, which may write a transfer's first reply straight to it.
    let control_socket = ControlSocket::new(tcp_stream, idle_session_timeout);
    let mut session: Session<Storage, User> = Session::new(Arc::new(storage), client.unwrap_or(peer))
        .ftps(ftps_config.clone())
        .metrics(collect_metrics)
        // The data channel's messages are marked as such: they never end the wait for a command
        // handler's answer (see `awaiting_reply`).
        .control_msg_tx(control_msg_tx.for_transfers().writing_to(Arc::downgrade(&control_socket)))
        .control_connection(control_connection)
        .failed_logins(failed_logins);
    session.data_connection_timeout = data_connection_timeout;
    session.idle_session_timeout = idle_session_timeout;
    session.data_connections = data_connections;
    session.proxy = client.map(|_| peer.ip().to_canonical());
    if let Some(b) = binder.lock().unwrap().take() {
        session = session.binder(b);
    }

    let mut logger = logger.new(
        slog::o!("trace-id" => format!("{}", session.trace_id), "source" => format!("{}", session.control_connection.map(|p| p.source).unwrap_or(session.source))),
    );

    let shared_session: SharedSession<Storage, User> = Arc::new(Mutex::new(session));

    let event_chain = PrimaryEventHandler {
        logger: logger.clone(),
        session: shared_session.clone(),
        auth_pipeline: auth_pipeline.clone(),
        tls_configured,
        passive_ports,
        passive_host,
        tx_control_chan: control_msg_tx,
        local_addr,
        storage_features,
        tx_proxy_loop: switchboard_msg_tx.clone(),
        sitemd5,
        site_handlers,
        after_rnfr: false,
    };

    let event_chain = EventDispatcherMiddleware::new(data_listener, presence_listener, event_chain);

    let event_chain = ActivePassiveEnforcerMiddleware {
        mode: active_passive_mode,
        next: event_chain,
    };

    let event_chain = AuthMiddleware {
        session: shared_session.clone(),
        next: event_chain,
        logged_in: false,
    };

    let event_chain = FtpsControlChanEnforcerMiddleware {
        session: shared_session.clone(),
        ftps_requirement: ftps_required_control_chan,
        next: event_chain,
    };

    let event_chain = FtpsDataChanEnforcerMiddleware {
        session: shared_session.clone(),
        ftps_requirement: ftps_required_data_chan,
        next: event_chain,
    };

    let event_chain = LoggingMiddleware {
        logger: logger.clone(),
        sequence_nr: 0,
        next: event_chain,
    };

    let mut event_chain = MetricsMiddleware {
        collect_metrics,
        next: event_chain,
    };

    // Small buffers that grow on demand: `Decoder::framed` starts both at 8 KiB, which was most of
    // the memory an idle session held.
    // Urgent data (Telnet "synch", or Python ftplib's `ABOR\r\n` sent as urgent data) stays in
    // the stream instead of being taken out of it by the kernel.
    if let Err(err) = nix::sys::socket::setsockopt(control_socket.stream(), nix::sys::socket::sockopt::OobInline, &true) {
        slog::warn!(logger, "Could not read urgent data inline: {}", err);
    }
    let cmd_and_reply_stream = framed(Box::new(ReadsPastUrgentMark(SharedSocket::new(control_socket.clone()))));
    let (mut reply_sink, mut command_source) = cmd_and_reply_stream.split();

    reply_sink.send(Reply::new(ReplyCode::ServiceReady, config.greeting)).await?;
    reply_sink.flush().await?;

    let jh = tokio::spawn(async move {
        // The control channel event loop
        slog::info!(logger, "Starting control loop");
        // However the loop ends, a passive listener still waiting for its transfer command closes
        // with it (and gives back its place), instead of waiting out its timeout.
        let _closes_passive = ClosesPassiveOnExit(shared_session.clone());
        // Replies are fed to the sink and flushed together before the loop waits: a message that
        // is already waiting when a reply has been fed (the data channel's `150` and `226` of a
        // small file, sent in one go) is handled at once, and both replies leave in one write.
        let mut ready: Option<Box<Delivered>> = None;
        // One idle timer for the session, set again before each wait (a new one per event cost
        // an allocation and a timer entry made and dropped).
        let mut timeout_delay = Box::pin(tokio::time::sleep(idle_session_timeout));
        // Commands handled in a row from what was already read (pipelined), without a flush.
        let mut in_a_row = 0;
        // Under TLS the socket's reader sees only ciphertext: a command may always be waiting.
        let mut tls = false;
        // `AUTH TLS` was answered `234`: the next event is the upgrade itself (nothing read or
        // sent in between: no command the client sent in plain text after it, and no reply of
        // the data channel that would come in plain text where the client expects its handshake).
        let mut upgrade_now = false;
        // The last command will be answered by a task of its own (a message on the control
        // channel): the next command is not read until a message comes, so that replies keep
        // the order of the commands and a command sees what the one before did. Only a handler's
        // message ends the wait, not one of a transfer running meanwhile (see `About`).
        let mut awaiting_reply = false;
        // The last transfer command was handed to the data channel, which answers it (`150` once
        // there is something to send, or a refusal): a command read before that first reply
        // waits in `held`, unless it acts on the transfer or the session (`ABOR`, `STAT`, `QUIT`).
        // Only a message about that transfer ends the wait (`awaited`), not a late one of an
        // earlier transfer.
        let mut transfer_starting = false;
        // What ends `transfer_starting`: a message about the transfer command handed over last
        // (this loop numbers them in the session, `Session::transfer_number`, and the data
        // channel's messages carry the number of theirs), or after an `ABOR` handed to the data
        // channel, its answer (the `226` that comes last).
        let mut awaited = About::Abor;
        // The commands read while a transfer starts, in order (at most `MAX_HELD`; no more is
        // read while it is full). Once it is not empty, every later command joins it but `ABOR`,
        // which acts at once (so that a client can still cut short a transfer whose data
        // connection never comes); they run one by one once the transfer's first reply is out
        // (each after the one before has its answer). (Boxed: kept out of the loop's own future,
        // which every idle session holds; `None` when empty.)
        let mut held: Option<Box<VecDeque<Result<Event, ControlChanError>>>> = None;
        // The transfer command handed to the data channel last, until its final reply (its
        // `226`, or a refusal or error), or its `426` after `ABOR`: `QUIT` waits for that reply.
        let mut transfer_open: Option<About> = None;
        // `QUIT` came while a transfer was under way (or a transfer command or `ABOR` waited for
        // its answer): RFC 959 keeps the connection open for the transfer's reply, so `QUIT` runs
        // once it is out, and nothing more is read meanwhile.
        let mut quit_waiting = false;
        loop {
            // A command the client sent together with the last one is handled before the replies
            // are flushed, so the replies of pipelined commands leave in one write; after
            // `MAX_IN_A_ROW` of them the loop flushes and waits as usual (messages, shutdown and
            // the idle timer get their turn).
            let maybe_more = tls || control_socket.read_more.load(Ordering::Relaxed);
            let may_read = !awaiting_reply && !quit_waiting;
            let pipelined = match maybe_more && in_a_row < MAX_IN_A_ROW && ready.is_none() && may_read && held.is_none() && !upgrade_now {
                true => command_source.next().now_or_never(),
                false => None,
            };
            in_a_row = if pipelined.is_some() { in_a_row + 1 } else { 0 };
            // For a message, what it answers.
            let mut about: Option<About> = None;
            // The message's reply is out already (see `ControlSocket`).
            let mut already_written = false;
            let mut from_client = false;
            let incoming = if upgrade_now {
                upgrade_now = false;
                Some(Ok(Event::InternalMsg(ControlChanMsg::SecureControlChannel)))
            } else if let Some(delivered) = ready.take() {
                about = Some(delivered.about);
                already_written = delivered.written;
                Some(Ok(Event::InternalMsg(delivered.msg)))
            } else if quit_waiting && transfer_open.is_none() && !transfer_starting {
                quit_waiting = false;
                Some(Ok(Event::Command(Command::Quit)))
            } else if let Some(queue) = held.as_mut().filter(|queue| {
                !transfer_starting && !awaiting_reply && !quit_waiting && (transfer_open.is_none() || !sets_up_a_data_connection(queue.front()))
            }) {
                let next = queue.pop_front();
                if queue.is_empty() {
                    held = None;
                }
                next
            } else if let Some(cmd) = pipelined {
                from_client = true;
                Some(received(cmd, &logger))
            } else {
                if let Err(err) = reply_sink.flush().await {
                    slog::warn!(logger, "Could not send replies: {:?}. Closing control connection", err);
                    return;
                }
                #[allow(unused_assignments)]
                let mut incoming = None;
                // While commands wait for a transfer's first reply, the timer keeps the hold's
                // deadline (see below).
                if (held.is_none() || !transfer_starting) && !quit_waiting {
                    timeout_delay.as_mut().reset(tokio::time::Instant::now() + idle_session_timeout);
                }
                // Everything fed is written: while the loop waits for a transfer's first reply, the
                // data channel may write it itself (plain TCP only: under TLS the stream is ours).
                let gated = transfer_starting && !tls;
                if gated {
                    control_socket.open();
                }
                // Biased: a message of the data channel already waiting is handled before a
                // command read at the same time (a `425` of a data connection that gave up as the
                // client sent `ABOR` comes before ABOR's `226`), and shutdown before commands.
                tokio::select! {
                    biased;
                    Some(delivered) = control_msg_rx.recv() => {
                        about = Some(delivered.about);
                        already_written = delivered.written;
                        incoming = Some(Ok(Event::InternalMsg(delivered.msg)));
                    },
                    _ = shutdown.listen() => {
                        slog::info!(logger, "Closing open control connection because of shutdown signal");
                        incoming = Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop)))
                        // TODO: Do we want to wait a bit for a data transfer to complete i.e. session.data_busy is true?
                    },
                    cmd = command_source.next(), if may_read && held.as_ref().is_none_or(|queue| queue.len() < MAX_HELD && !input_ended(queue)) => {
                        from_client = true;
                        incoming = Some(received(cmd, &logger));
                    },
                    _ = &mut timeout_delay => {
                        if held.is_some() && transfer_starting {
                            slog::warn!(logger, "A transfer command got no first reply in time; the next command runs");
                            transfer_starting = false;
                        } else {
                            let session = shared_session.lock().await;
                            match session.data_busy {
                                true => {
                                    incoming = None;
                                    // `QUIT` waits on a transfer moving data: look again later.
                                    if quit_waiting {
                                        timeout_delay
                                            .as_mut()
                                            .reset(tokio::time::Instant::now() + data_connection_timeout + HOLD_MARGIN);
                                    }
                                }
                                // No reply came for the transfer `QUIT` waits on: it waits no more.
                                false if quit_waiting => {
                                    transfer_open = None;
                                    transfer_starting = false;
                                    incoming = None;
                                }
                                false => incoming = Some(Err(ControlChanError::new(ControlChanErrorKind::ControlChannelTimeout)))
                            };
                        }
                    },
                }
                // Awake: nothing more is written from outside; the rest of a reply written in
                // part meanwhile goes before anything the loop writes.
                if let Some(rest) = gated.then(|| control_socket.close()).flatten()
                    // (Boxed: that wait would otherwise make every session's loop bigger.)
                    && let Err(err) = Box::pin(async { tokio::io::AsyncWriteExt::write_all(&mut SharedSocket::new(control_socket.clone()), &rest).await }).await
                {
                    slog::warn!(logger, "Could not send replies: {:?}. Closing control connection", err);
                    return;
                }
                incoming
            };
            // An `ABOR` behind one the data channel has still to answer waits for that answer
            // (answered at once, it would find no data connection, and its `226` would come first).
            let abor_behind_abor = transfer_starting && awaited == About::Abor && matches!(&incoming, Some(Ok(Event::Command(Command::Abor))));
            let acts_at_once = !abor_behind_abor
                && match &held {
                    None => acts_while_a_transfer_starts(&incoming),
                    Some(_) => acts_before_held_commands(&incoming),
                };
            // A command that sets up a data connection waits for the final reply of the transfer
            // under way (it would take the session's data channel from it: see
            // `sets_up_a_data_connection`).
            let behind_transfer = transfer_open.is_some() && sets_up_a_data_connection(incoming.as_ref());
            if from_client && (transfer_starting || held.is_some() || behind_transfer) && !acts_at_once {
                if let Some(incoming) = incoming {
                    // The data channel answers a transfer command within the data connection
                    // timeout (`425` when no connection came); should it ever not, the held
                    // commands wait no longer than that and a margin.
                    if held.is_none() {
                        timeout_delay
                            .as_mut()
                            .reset(tokio::time::Instant::now() + data_connection_timeout + HOLD_MARGIN);
                    }
                    held.get_or_insert_with(Default::default).push_back(incoming);
                }
                continue;
            }
            match incoming {
                None => {} // Loop again
                Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop))) => {
                    let _ = reply_sink.flush().await;
                    let _ = Box::pin(event_chain.handle(Event::InternalMsg(ControlChanMsg::ExitControlLoop))).await;
                    if let Some(tx) = switchboard_msg_tx
                        && let Err(err) = tx.send(SwitchboardMessage::CloseDataPortCommand(shared_session.clone())).await
                    {
                        slog::warn!(logger, "Could not send CloseDataPortCommand to channel: {}", err);
                        return;
                    };
                    slog::debug!(logger, "Exiting control loop");
                    return;
                }
                Some(Ok(Event::Command(Command::Quit))) if transfer_open.is_some() || transfer_starting => {
                    quit_waiting = true;
                    // While no data moves, the transfer's reply comes within the data connection
                    // timeout (a `425` at the latest); should it not, `QUIT` waits no longer.
                    timeout_delay
                        .as_mut()
                        .reset(tokio::time::Instant::now() + data_connection_timeout + HOLD_MARGIN);
                }
                Some(Ok(event)) => {
                    let answers_later = match &event {
                        Event::Command(command) => answers_later(command),
                        Event::InternalMsg(_) => {
                            awaiting_reply &= matches!(about, Some(About::Transfer(_) | About::Abor));
                            transfer_starting &= about != Some(awaited);
                            false
                        }
                    };
                    let starts_transfer = matches!(&event, Event::Command(command) if answered_by_the_data_channel(command));
                    let hands_over = matches!(&event, Event::Command(command) if handed_to_the_data_channel(command));
                    // A message that may end the transfer under way.
                    // (About the transfer, its number: `ABOR`'s `426` is about it, its `226` is not.)
                    let may_end_transfer = about.is_some() && about == transfer_open;
                    let asks_for_tls = matches!(&event, Event::Command(Command::Auth { .. }));
                    // What will end the wait for this command's first reply, should the data channel
                    // answer it: a transfer command is numbered before its handler hands it over.
                    let awaits = match &event {
                        Event::Command(command) if handed_to_the_data_channel(command) => {
                            let mut session = shared_session.lock().await;
                            session.transfer_number = session.transfer_number.wrapping_add(1);
                            About::Transfer(session.transfer_number)
                        }
                        _ => About::Abor,
                    };
                    if let Event::InternalMsg(ControlChanMsg::SecureControlChannel) = event {
                        slog::info!(logger, "Upgrading control channel to TLS");
                        // What the client sent before the handshake is not taken as sent over TLS:
                        // commands held behind `AUTH TLS` go, as what waits in the codec's buffer.
                        if let Some(dropped) = held.take() {
                            slog::warn!(logger, "{} commands sent before the TLS handshake were ignored", dropped.len());
                        }
                        // `234` (fed, not yet written) goes out before the handshake.
                        if let Err(err) = reply_sink.flush().await {
                            slog::warn!(logger, "Could not send replies: {:?}. Closing control connection", err);
                            return;
                        }

                        // Get back the original TCP Stream
                        let codec_io = reply_sink.reunite(command_source).unwrap();
                        let io = codec_io.into_inner();

                        // Wrap in TLS Stream
                        let acceptor: tokio_rustls::TlsAcceptor = match ftps_config.clone() {
                            FtpsConfig::On { tls_config } => tls_config.into(),
                            _ => panic!("Could not create TLS acceptor. Illegal program state"),
                        };
                        // The handshake and the stream are boxed: they are kilobytes, and inline
                        // they would make every session's task that much bigger, TLS or not.
                        let accepted = Box::pin(acceptor.accept(io)).await.map(Box::new);
                        let io: Box<dyn AsyncReadAsyncWriteSendUnpin> = match accepted {
                            Ok(stream) => {
                                let s: &ServerConnection = stream.get_ref().1;
                                if let Some(certs) = s.peer_certificates() {
                                    let mut session = shared_session.lock().await;
                                    session.cert_chain = Some(certs.iter().map(|c| unftp_core::auth::ClientCert(c.as_ref().to_vec())).collect());
                                }
                                stream
                            }
                            Err(err) => {
                                slog::warn!(logger, "Closing control channel. Could not upgrade to TLS: {}", err);
                                return;
                            }
                        };

                        // Wrap in codec again and get sink + source
                        let cmd_and_reply_stream = framed(io);
                        tls = true;
                        let (sink, src) = cmd_and_reply_stream.split();
                        reply_sink = sink;
                        command_source = src;
                    }

                    if let Event::Command(Command::User { username }) = &event {
                        let s: String = String::from_utf8_lossy(username).into();
                        logger = logger.new(slog::o!("username" => s));
                    }

                    // TODO: Handle Event::InternalMsg(InternalMsg::PlaintextControlChannel)

                    // Boxed: the chain is one future, kept out of the loop's own (an idle session holds only the loop).
                    let handle_result = match Box::pin(event_chain.handle(event)).await {
                        Err(e) => Err(e),
                        Ok(Reply::None) if answers_later => {
                            awaiting_reply = true;
                            Ok(())
                        }
                        Ok(Reply::None) if starts_transfer => {
                            transfer_starting = true;
                            awaited = awaits;
                            if hands_over {
                                transfer_open = Some(awaits);
                            }
                            if held.is_some() {
                                // The held commands wait for this one's first reply now.
                                timeout_delay
                                    .as_mut()
                                    .reset(tokio::time::Instant::now() + data_connection_timeout + HOLD_MARGIN);
                            }
                            Ok(())
                        }
                        // `234` to `AUTH TLS`: the handshake comes next (see `upgrade_now`).
                        Ok(
                            reply @ Reply::CodeAndMsg {
                                code: ReplyCode::AuthOkayNoDataNeeded,
                                ..
                            },
                        ) if asks_for_tls => {
                            upgrade_now = true;
                            reply_sink.feed(reply).await
                        }
                        Ok(reply) => {
                            match is_final(&reply) {
                                true if may_end_transfer => transfer_open = None,
                                // `150` of an upload (its handler answers it).
                                false if hands_over => transfer_open = Some(awaits),
                                _ => {}
                            }
                            match already_written {
                                true => Ok(()),
                                false => reply_sink.feed(reply).await,
                            }
                        }
                    };

                    if let Err(chan_err) = handle_result {
                        slog::warn!(logger, "Event handler chain error: {:?}. Closing control connection", chan_err);
                        return;
                    }
                }
                Some(Err(e)) => {
                    // A line that does not parse ends a pending rename, as any command but `RNTO`
                    // does (see `PrimaryEventHandler::handle`). (Boxed: that wait would otherwise
                    // make every session's loop bigger and every turn of it slower.)
                    Box::pin(async { shared_session.lock().await.rename_from = None }).await;
                    let (reply, close_connection) = handle_control_channel_error(logger.clone(), e);
                    let result = if close_connection {
                        reply_sink.send(reply).await
                    } else {
                        reply_sink.feed(reply).await
                    };
                    if result.is_err() {
                        slog::warn!(logger, "Could not send error reply to client");
                        return;
                    }
                    if close_connection {
                        return;
                    }
                }
            }
            // (A message taken before an upgrade waits in `ready` until after it.)
            if ready.is_none() {
                ready = control_msg_rx.try_recv();
            }
        }
    });

    Ok(jh)
}

/// Closes the session's data connection that still waits for a transfer command (a passive
/// listener, or an active connection: one under way is not touched) and lets go of its place,
/// when dropped: at the end of the control loop.
struct ClosesPassiveOnExit<Storage, User>(SharedSession<Storage, User>)
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static;

impl<Storage, User> Drop for ClosesPassiveOnExit<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    fn drop(&mut self) {
        match self.0.try_lock() {
            Ok(mut session) => session.close_unused_data_connection(),
            // Locked by a task of the session just now: done as soon as it lets go.
            Err(_) => {
                let session = self.0.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { session.lock().await.close_unused_data_connection() });
                }
            }
        }
    }
}

/// True for a reply that ends what it answers (not `1xx`, and not the absence of a reply).
fn is_final(reply: &Reply) -> bool {
    match reply {
        Reply::None => false,
        Reply::CodeAndMsg { code, .. } | Reply::MultiLine { code, .. } => *code as u32 >= 200,
    }
}

/// The initial size of the control connection's read and write buffers (they grow as needed):
/// a logged-in idle session's greeting, `331` and `230` fit.
const CODEC_BUFFER: usize = 128;

/// How much longer than the data connection timeout a command waits behind a transfer command
/// that got no first reply (see `transfer_starting`).
const HOLD_MARGIN: Duration = Duration::from_secs(5);

/// Most commands read and held while a transfer starts (see `held`); the loop reads no more until
/// they run.
const MAX_HELD: usize = 32;

/// Most pipelined commands handled in a row before the control loop flushes and waits.
const MAX_IN_A_ROW: u32 = 32;

/// Replies fed and not yet flushed are written once they reach this many bytes (the replies of
/// pipelined commands leave together up to it).
const WRITE_BOUNDARY: usize = 2048;

/// The control connection's codec over `io`.
fn framed(io: Box<dyn AsyncReadAsyncWriteSendUnpin>) -> Framed<Box<dyn AsyncReadAsyncWriteSendUnpin>, FtpCodec> {
    let mut framed = Framed::with_capacity(io, FtpCodec::new(), CODEC_BUFFER);
    framed.set_backpressure_boundary(WRITE_BOUNDARY);
    framed
}

/// True for the commands whose handlers may answer from a task of their own (a message on the
/// control channel) rather than with their reply; transfer commands are not among them (the
/// control connection stays open to `ABOR` and `STAT` during a transfer).
fn answers_later(command: &Command) -> bool {
    matches!(
        command,
        Command::Pass { .. }
            | Command::Stat { .. }
            | Command::Cwd { .. }
            | Command::Cdup
            | Command::Dele { .. }
            | Command::Rmd { .. }
            | Command::Mkd { .. }
            | Command::Rnfr { .. }
            | Command::Rnto { .. }
            | Command::Ccc
            | Command::Size { .. }
            | Command::Mfmt { .. }
            | Command::Mdtm { .. }
            | Command::Md5 { .. }
    )
}

/// The event for what the command stream gave: a command, a line that did not parse, or its end
/// (the client closed the connection).
fn received(cmd: Option<Result<Result<Command, ControlChanError>, ControlChanError>>, logger: &slog::Logger) -> Result<Event, ControlChanError> {
    match cmd {
        Some(cmd_result) => cmd_result.and_then(|parsed| parsed).map(Event::Command),
        None => {
            slog::info!(logger, "Control connection was closed.");
            Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop))
        }
    }
}

/// True for the commands whose first reply may come from the data channel rather than their
/// handler: the transfer commands (`150` once there is something to send, `550` when there is
/// nothing: patch 7), and `ABOR` when a data connection's executor answers it (patch 48).
fn answered_by_the_data_channel(command: &Command) -> bool {
    matches!(
        command,
        Command::Retr { .. } | Command::List { .. } | Command::Nlst { .. } | Command::Mlsd { .. } | Command::Abor
    )
}

/// True for the transfer commands, which the data channel carries out (numbered: see
/// `transfer_number`); their handlers may still refuse them.
fn handed_to_the_data_channel(command: &Command) -> bool {
    matches!(
        command,
        Command::Retr { .. }
            | Command::Stor { .. }
            | Command::Appe { .. }
            | Command::Stou { .. }
            | Command::List { .. }
            | Command::Nlst { .. }
            | Command::Mlsd { .. }
    )
}

/// True for what is handled at once while a transfer command waits for its first reply: the
/// commands that act on the transfer or the session, and the client leaving.
fn acts_while_a_transfer_starts(incoming: &Option<Result<Event, ControlChanError>>) -> bool {
    matches!(
        incoming,
        None | Some(Ok(Event::Command(Command::Abor | Command::Stat { .. } | Command::Quit))) | Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop)))
    )
}

/// True for `PASV`, `EPSV`, `PORT` and `EPRT`. Read while a transfer is under way (after its
/// `150`, or before an upload's data channel took the command), one waits in `held` until the
/// transfer's final reply, as vsftpd and proftpd answer it after the transfer's `226`
/// (pure-ftpd refuses it with `500`): handled at once, it would close the passive port whose task had not yet taken an
/// upload's command (which then never got a final reply), or take the abort channel from a
/// running transfer (so that `ABOR` no longer reached it).
fn sets_up_a_data_connection(incoming: Option<&Result<Event, ControlChanError>>) -> bool {
    matches!(
        incoming,
        Some(Ok(Event::Command(Command::Pasv | Command::Epsv { .. } | Command::Port { .. } | Command::Eprt { .. })))
    )
}

/// True for what is handled at once even when commands are already held behind a starting
/// transfer (see `held`): `ABOR`; anything else (`STAT` and `QUIT` too, and the end of the
/// client's input) waits its turn behind them.
fn acts_before_held_commands(incoming: &Option<Result<Event, ControlChanError>>) -> bool {
    matches!(incoming, None | Some(Ok(Event::Command(Command::Abor))))
}

/// True when the client's input ended after the commands held (nothing more to read).
fn input_ended(held: &VecDeque<Result<Event, ControlChanError>>) -> bool {
    matches!(held.back(), Some(Ok(Event::InternalMsg(ControlChanMsg::ExitControlLoop))))
}

/// The control connection's socket, read past the urgent mark: a read stops at the mark, and
/// tokio takes a short read for "nothing more to read" until new data arrives (it does not even
/// try again), so the byte at the mark (the LF of ftplib's urgent `ABOR\r\n`) would wait for the
/// client's next command, which waits for ABOR's reply. After each short read that does not end
/// a line, what is already there is read too, with one non-blocking `recv` on the socket.
/// The socket's `read_more` says whether the last read brought more than one line (a line end
/// before its last byte): only then may a command be waiting in the codec's buffer after the
/// first.
struct ReadsPastUrgentMark(SharedSocket);

impl tokio::io::AsyncRead for ReadsPastUrgentMark {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.0).poll_read(cx, buf);
        // A read that ends with LF ends a command line: the mark cannot be right after it (a
        // client's urgent send puts the mark on its last byte, the LF or the Telnet DM, so the
        // read before the mark ends with the CR or the IAC), and the extra `recv` would only
        // find nothing, once per command.
        if let std::task::Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
            && buf.remaining() > 0
            && buf.filled().last() != Some(&b'\n')
            && let Ok(more) = nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(this.0.socket.stream()),
                buf.initialize_unfilled(),
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
        {
            buf.advance(more);
        }
        let read = &buf.filled()[before..];
        let more_than_a_line = matches!(polled, std::task::Poll::Ready(Ok(()))) && read.split_last().is_some_and(|(_, head)| head.contains(&b'\n'));
        this.0.socket.read_more.store(more_than_a_line, Ordering::Relaxed);
        polled
    }
}

impl tokio::io::AsyncWrite for ReadsPastUrgentMark {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, bytes: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, bytes)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

// gets the reply to be sent to the client and tells if the connection should be closed.
fn handle_control_channel_error(logger: slog::Logger, error: ControlChanError) -> (Reply, bool) {
    slog::warn!(logger, "Control channel error: {:?}", error);
    match error.kind() {
        ControlChanErrorKind::UnknownCommand { .. } => (Reply::new(ReplyCode::CommandSyntaxError, "Command not implemented"), false),
        // The offending line has been consumed: answer it and go on with the next one.
        ControlChanErrorKind::Utf8Error => (Reply::new(ReplyCode::CommandSyntaxError, "Invalid UTF8 in command"), false),
        ControlChanErrorKind::InvalidCommand => (Reply::new(ReplyCode::ParameterSyntaxError, "Invalid Parameter"), false),
        ControlChanErrorKind::LineTooLong => (
            Reply::new_with_string(
                ReplyCode::CommandSyntaxError,
                format!("Command line too long (the limit is {} bytes)", super::codecs::MAX_LINE),
            ),
            false,
        ),
        ControlChanErrorKind::ControlChannelTimeout => (
            Reply::new(ReplyCode::ServiceNotAvailable, "Session timed out. Closing control connection"),
            true,
        ),
        _ => (Reply::new(ReplyCode::LocalError, "Unknown internal server error, please try again later"), true),
    }
}

#[derive(Debug)]
struct PrimaryEventHandler<Storage, User>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    logger: slog::Logger,
    session: SharedSession<Storage, User>,
    auth_pipeline: Arc<AuthenticationPipeline<User>>,
    tls_configured: bool,
    passive_ports: RangeInclusive<u16>,
    passive_host: PassiveHost,
    tx_control_chan: ControlChanSender,
    local_addr: SocketAddr,
    storage_features: u32,
    tx_proxy_loop: Option<SwitchboardSender<Storage, User>>,
    sitemd5: SiteMd5,
    site_handlers: Arc<HashMap<String, Arc<dyn SiteCommandHandler<Storage, User>>>>,
    /// The last command was `RNFR` (see `handle`).
    after_rnfr: bool,
}

impl<Storage, User> PrimaryEventHandler<Storage, User>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle_internal_msg(&self, msg: ControlChanMsg) -> Result<Reply, ControlChanError> {
        use self::ControlChanMsg::*;
        use SessionState::*;

        match msg {
            NotFound => Ok(Reply::new(ReplyCode::FileError, "File not found")),
            PermissionDenied => Ok(Reply::new(ReplyCode::FileError, "Permision denied")),
            // (The `REST` offset was taken with the transfer command: nothing to reset here.)
            SentData { .. } => Ok(Reply::new(ReplyCode::ClosingDataConnection, "Successfully sent")),
            WriteFailed => Ok(Reply::new(ReplyCode::TransientFileError, "Failed to write file")),
            ConnectionReset => Ok(Reply::new(ReplyCode::ConnectionClosed, "Datachannel unexpectedly closed")),
            WrittenData { .. } => Ok(Reply::new(ReplyCode::ClosingDataConnection, "File successfully written")),
            DataConnectionClosedAfterStor => Ok(Reply::new(ReplyCode::FileActionOkay, "unFTP holds your data for you")),
            DirectorySuccessfullyListed => Ok(Reply::new(ReplyCode::ClosingDataConnection, "Listed the directory")),
            DirectoryListFailure => Ok(Reply::new(ReplyCode::ClosingDataConnection, "Failed to list the directory")),
            CwdSuccess => Ok(Reply::new(ReplyCode::FileActionOkay, "Successfully changed working directory")),
            DelFileSuccess { .. } | RmDirSuccess { .. } => Ok(Reply::new(ReplyCode::FileActionOkay, "Successfully removed")),
            DelFail => Ok(Reply::new(ReplyCode::TransientFileError, "Failed to delete the file")),
            ExitControlLoop => Ok(Reply::none()),
            SecureControlChannel => {
                let mut session = self.session.lock().await;
                session.cmd_tls = true;
                Ok(Reply::none())
            }
            PlaintextControlChannel => {
                let mut session = self.session.lock().await;
                session.cmd_tls = false;
                Ok(Reply::none())
            }
            // RFC 959: `257 "PATH" …`, quotes doubled inside.
            MkDirSuccess { path } => Ok(Reply::new_with_string(
                ReplyCode::DirCreated,
                format!("{} created", super::reply_text::quoted(std::path::Path::new(&path))),
            )),
            MkdirFail => Ok(Reply::new(ReplyCode::FileError, "Failed to create directory")),
            RenameSuccess { .. } => Ok(Reply::new(ReplyCode::FileActionOkay, "Renamed")),
            AuthSuccess { .. } => {
                let mut session = self.session.lock().await;
                session.state = WaitCmd;
                Ok(Reply::new(ReplyCode::UserLoggedIn, "User logged in, proceed"))
            }
            AuthFailed { message } => {
                let mut session = self.session.lock().await;
                session.state = New; // According to RFC 959, a PASS command MUST precede a USER command
                match message {
                    Some(message) => {
                        let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                        Ok(Reply::new_with_string(ReplyCode::NotLoggedIn, message))
                    }
                    None => Ok(Reply::new(ReplyCode::NotLoggedIn, "Authentication failed")),
                }
            }
            StorageError(error_type) => Ok(super::reply_text::storage_error(&error_type, None)),
            CommandChannelReply(reply) => Ok(reply),
        }
    }

    #[tracing_attributes::instrument]
    /// Runs `cmd`; `after_rnfr`: the command before it was `RNFR`.
    async fn handle_command(&self, cmd: Command, after_rnfr: bool) -> Result<Reply, ControlChanError> {
        let args = CommandContext {
            parsed_command: cmd.clone(),
            session: self.session.clone(),
            auth_pipeline: self.auth_pipeline.clone(),
            tls_configured: self.tls_configured,
            passive_ports: self.passive_ports.clone(),
            passive_host: self.passive_host.clone(),
            tx_control_chan: self.tx_control_chan.clone(),
            local_addr: self.local_addr,
            storage_features: self.storage_features,
            tx_prebound_loop: self.tx_proxy_loop.clone(),
            logger: self.logger.clone(),
            sitemd5: self.sitemd5,
            site_handlers: self.site_handlers.clone(),
        };

        let handler: Box<dyn CommandHandler<Storage, User>> = match cmd {
            Command::User { username } => Box::new(commands::User::new(username)),
            Command::Pass { password } => Box::new(commands::Pass::new(password)),
            Command::Syst => Box::new(commands::Syst),
            Command::Stat { path } => Box::new(commands::Stat::new(path)),
            Command::Acct { .. } => Box::new(commands::Acct),
            Command::Type { supported } => Box::new(commands::Type { supported }),
            Command::Stru { structure } => Box::new(commands::Stru::new(structure)),
            Command::Mode { mode } => Box::new(commands::Mode::new(mode)),
            Command::Help => Box::new(commands::Help),
            Command::Noop => Box::new(commands::Noop),
            Command::Pasv => Box::new(commands::Pasv::new()),
            Command::Epsv { protocol } => Box::new(commands::Epsv::new(protocol)),
            Command::EpsvAll => Box::new(commands::EpsvAll),
            Command::Port { addr } => Box::new(commands::Port::new(addr)),
            Command::Eprt { addr } => Box::new(commands::Port::extended(addr)),
            Command::Retr { .. } => Box::new(commands::Retr),
            Command::Stor { .. } => Box::new(commands::Stor),
            Command::List { .. } => Box::new(commands::List),
            Command::Nlst { .. } => Box::new(commands::Nlst),
            Command::Feat => Box::new(commands::Feat),
            Command::Pwd => Box::new(commands::Pwd),
            Command::Cwd { path } => Box::new(commands::Cwd::new(path)),
            Command::Cdup => Box::new(commands::Cdup),
            Command::Opts { option } => Box::new(commands::Opts::new(option)),
            Command::Dele { path } => Box::new(commands::Dele::new(path)),
            Command::Rmd { path } => Box::new(commands::Rmd::new(path)),
            Command::Quit => Box::new(commands::Quit),
            Command::Mkd { path } => Box::new(commands::Mkd::new(path)),
            Command::Allo { .. } => Box::new(commands::Allo),
            Command::Abor => Box::new(commands::Abor),
            Command::Stou { base } => Box::new(commands::Stou { base }),
            Command::Rnfr { file } => Box::new(commands::Rnfr::new(file)),
            Command::Rnto { file } => Box::new(commands::Rnto::new(file, after_rnfr)),
            Command::Auth { protocol } => Box::new(commands::Auth::new(protocol)),
            Command::Pbsz {} => Box::new(commands::Pbsz),
            Command::Ccc => Box::new(commands::Ccc),
            Command::Prot { param } => Box::new(commands::Prot::new(param)),
            Command::Size { file } => Box::new(commands::Size::new(file)),
            Command::Rest { offset } => Box::new(commands::Rest::new(offset)),
            Command::Mdtm { file } => Box::new(commands::Mdtm::new(file)),
            Command::Mfmt { time, path } => Box::new(commands::Mfmt { time, path }),
            Command::Md5 { file } => Box::new(commands::Md5::new(file)),
            Command::Mlst { path } => Box::new(commands::Mlst::new(path)),
            Command::Mlsd { .. } => Box::new(commands::Mlsd),
            Command::Appe { .. } => Box::new(commands::Appe),
            Command::Site { command, arguments } => Box::new(commands::Site::new(command, arguments)),
            // RFC 959's own commands that this server leaves out get `502`; a command it does not
            // know at all `500` (both were `500`).
            Command::Other { command_name, .. } if matches!(command_name.as_str(), "REIN" | "SMNT") => {
                return Ok(Reply::new(ReplyCode::CommandNotImplemented, "Command not implemented"));
            }
            Command::Other { .. } => return Ok(Reply::new(ReplyCode::CommandSyntaxError, "Command not recognized")),
        };

        handler.handle(args).await
    }
}

impl<Storage, User> ControlChanMiddleware for PrimaryEventHandler<Storage, User>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    async fn handle(&mut self, event: Event) -> Result<Reply, ControlChanError> {
        match event {
            Event::Command(cmd) => {
                // RFC 959: `RNFR` "must be followed immediately by" `RNTO`; an `RNTO` after any
                // other command finds no rename (`Rnto` is told). A line that does not parse ends
                // it too (in the loop).
                let after_rnfr = std::mem::replace(&mut self.after_rnfr, matches!(cmd, Command::Rnfr { .. }));
                self.handle_command(cmd, after_rnfr).await
            }
            Event::InternalMsg(msg) => self.handle_internal_msg(msg).await,
        }
    }
}
