//! Contains code pertaining to the FTP *data* channel

use super::{
    chancomms::{ControlChanMsg, DataChanMsg},
    tls::FtpsConfig,
};
use crate::server::chancomms::{Delivered, TransferCmd, TransferSender};
use crate::server::data_stream::DataStream;
use crate::server::session::SharedSession;
use crate::{
    auth::UserDetail,
    storage::{Error, ErrorKind, Metadata, StorageBackend},
};

use crate::server::chancomms::DataChanCmd;
use crate::server::controlchan::reply_text::{opening_download, printable, storage_error};
use crate::server::{Reply, ReplyCode};
use std::{path::PathBuf, sync::Arc};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio_rustls::TlsAcceptor;

use crate::metrics;

#[derive(Debug)]
struct DataCommandExecutor<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    pub user: Arc<Option<User>>,
    pub socket: DataStream,
    pub control_msg_tx: TransferSender,
    pub storage: Arc<Storage>,
    pub cwd: PathBuf,
    pub mlst_facts: crate::server::controlchan::commands::mlst::Facts,
    pub ftps_mode: FtpsConfig,
    /// How long the transfer may go without progress (the session's idle timeout).
    pub stall_limit: Duration,
    pub logger: slog::Logger,
    pub data_cmd_rx: Option<Receiver<TransferCmd>>,
    pub data_abort_rx: Option<Receiver<()>>,
}

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

struct MeasuringWriter<W> {
    writer: W,
    command: &'static str,
    stall: Stall,
}

struct MeasuringReader<R> {
    reader: R,
    command: &'static str,
    stall: Stall,
}

/// Ends a transfer that goes `limit` without progress (nothing written to the client, or read
/// from it): a client that stops reading a download, or sending an upload, while keeping its
/// data connection open, would otherwise hold its session, the data connection and the file
/// for ever (the control connection's idle timeout waits while a transfer runs). The timer is
/// made at the first wait and set again only at a wait after progress.
struct Stall {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    progressed: bool,
}

impl Stall {
    fn new(limit: Duration) -> Self {
        Stall {
            limit,
            timer: None,
            progressed: false,
        }
    }

    /// What the data connection's poll gave: `Pending` (a wait) is checked against the limit,
    /// and becomes `ConnectionAborted` when it is over; progress (anything else) is noted.
    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.progressed = true;
            return polled;
        }
        let timer = match &mut self.timer {
            Some(timer) => {
                if self.progressed {
                    timer.as_mut().reset(tokio::time::Instant::now() + self.limit);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(self.limit))),
        };
        self.progressed = false;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("no progress for {} s: the transfer is cut short", self.limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for MeasuringWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> std::task::Poll<Result<usize, std::io::Error>> {
        let this = self.get_mut();

        let result = Pin::new(&mut this.writer).poll_write(cx, buf);
        if let Poll::Ready(Ok(bytes_written)) = &result {
            metrics::inc_sent_bytes(*bytes_written, this.command);
        }

        this.stall.check(cx, result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.writer).poll_flush(cx);
        this.stall.check(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.writer).poll_shutdown(cx);
        this.stall.check(cx, result)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MeasuringReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.reader).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let bytes_read = buf.filled().len();
            metrics::inc_received_bytes(bytes_read, this.command);
        }
        this.stall.check(cx, result)
    }
}

/// Answers the client's TLS close_notify with ours when an upload's data stream ends, before
/// reporting the end: clients that shut TLS down properly (Python's ftplib `unwrap()`) wait for
/// it, and a bare TCP close makes them fail the upload with "EOF in violation of protocol".
struct CloseNotifyOnEof<S> {
    stream: S,
    closing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for CloseNotifyOnEof<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            let before = buf.filled().len();
            match Pin::new(&mut this.stream).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => this.closing = true,
                other => return other,
            }
        }
        // The end of the data: send our close_notify (errors do not matter any more).
        match Pin::new(&mut this.stream).poll_shutdown(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }
}

impl<W> MeasuringWriter<W> {
    fn new(writer: W, command: &'static str, stall_limit: Duration) -> MeasuringWriter<W> {
        Self {
            writer,
            command,
            stall: Stall::new(stall_limit),
        }
    }
}

impl<R> MeasuringReader<R> {
    fn new(reader: R, command: &'static str, stall_limit: Duration) -> MeasuringReader<R> {
        Self {
            reader,
            command,
            stall: Stall::new(stall_limit),
        }
    }
}

impl<Storage, User> DataCommandExecutor<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    async fn execute(mut self, session_arc: SharedSession<Storage, User>) {
        let mut data_cmd_rx = self.data_cmd_rx.take().unwrap();
        let mut data_abort_rx = self.data_abort_rx.take().unwrap();
        let timeout = session_arc.lock().await.data_connection_timeout;
        let mut timeout_delay = Box::pin(tokio::time::sleep(timeout));
        let control_msg_tx = self.control_msg_tx.clone();
        // While waiting for its command, the data connection is watched: one the client closed
        // is let go after a short grace (it used to sit in CLOSE-WAIT for five minutes), and one
        // that a newer PASV, EPSV or PORT replaced at once (its command channel closes).
        let mut probe = [0u8; 1];
        let mut watching = true;
        // Ended unused while still the session's data connection (`ABOR`, a timeout): the
        // session's place for it (see `Session::passive_place`) comes free.
        let mut unused = false;
        loop {
            // A command and an `ABOR` both waiting: the command came first, and the abort is its.
            tokio::select! {
                biased;
                command = data_cmd_rx.recv() => {
                    let Some(command) = command else {
                        slog::debug!(self.logger, "Data connection replaced before a command");
                        // An `ABOR` that came before the `PORT`/`PASV` that replaced this
                        // connection is still answered.
                        if data_abort_rx.try_recv().is_ok() {
                            answer_nothing_to_abort(&control_msg_tx).await;
                        }
                        break;
                    };
                    // The place is the transfer's until it ends.
                    let _place = session_arc.lock().await.passive_place.take();
                    self.run(command, &mut data_abort_rx, &session_arc).await;
                    break;
                },
                abort = data_abort_rx.recv() => {
                    unused = true;
                    if abort.is_some() {
                        self.handle_incoming(DataChanMsg::Abort, 0).await;
                        answer_nothing_to_abort(&control_msg_tx).await;
                    }
                    break;
                },
                peeked = self.socket.peek(&mut probe), if watching => {
                    watching = false;
                    if matches!(peeked, Ok(0) | Err(_)) {
                        // Closed by the client: an empty upload looks just like this (lftp
                        // connects, closes and then sends STOR), so its command gets a moment
                        // before the connection is let go.
                        slog::debug!(self.logger, "Data connection closed by the client before a command");
                        let grace = tokio::time::Instant::now() + CLOSED_DATA_CONNECTION_GRACE;
                        if grace < timeout_delay.deadline() {
                            timeout_delay.as_mut().reset(grace);
                        }
                    }
                    // Otherwise data came before the command (an eager STOR): keep waiting.
                },
                _ = &mut timeout_delay => {
                    slog::warn!(self.logger, "Data channel connection timed out");
                    unused = true;
                    answer_what_came_before_giving_up(Some(&mut data_cmd_rx), &mut data_abort_rx, &control_msg_tx, "the data connection timed out").await;
                    break;
                }
            }
        }
        let mut session = session_arc.lock().await;
        session.data_busy = false;
        if unused {
            session.passive_place = None;
        }
    }

    /// Runs the transfer `command` asks for, racing it against `ABOR` (`data_abort_rx`).
    async fn run(mut self, command: TransferCmd, data_abort_rx: &mut Receiver<()>, session_arc: &SharedSession<Storage, User>) {
        // The session is not kept locked during the transfer: the control channel must go on
        // answering (ABOR above all, but also STAT, NOOP, QUIT). What the commands before this
        // one chose counts (an executor made at `PORT` time predates a later `OPTS MLST`); the
        // `REST` offset came with the command.
        self.mlst_facts = session_arc.lock().await.mlst_facts;
        let start_pos = command.start_pos;
        // The messages are about this command (numbered by the control loop).
        self.control_msg_tx = self.control_msg_tx.for_transfer(command.number);
        let control_msg_tx = self.control_msg_tx.clone();
        let session = session_arc.clone();
        let unfinished = AnswersAnUnfinishedTransfer::new(control_msg_tx.clone(), data_abort_rx, move || {
            if let Ok(mut locked) = session.try_lock() {
                locked.data_busy = false;
            } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                // Locked by another task of the session just now: as soon as it lets go.
                runtime.spawn(async move { session.lock().await.data_busy = false });
            }
        });
        let transfer = self.handle_incoming(DataChanMsg::ExternalCommand(command.command), start_pos);
        tokio::select! {
            () = transfer => {
                // An ABOR that raced with the end of the transfer still gets its answer.
                unfinished.aborts.close();
                if unfinished.aborts.try_recv().is_ok() {
                    let reply = Reply::new(ReplyCode::ClosingDataConnection, "Transfer complete; nothing to abort");
                    let _ = control_msg_tx.answer_abor(ControlChanMsg::CommandChannelReply(reply)).await;
                }
            }
            Some(()) = unfinished.aborts.recv() => {
                // Dropping the transfer closes the data connection and cancels the storage
                // back-end's get or put before it finishes: nothing of an aborted upload is
                // committed, whatever the client does with the data connection next.
                answer_aborted(&control_msg_tx).await;
            }
        }
        unfinished.done();
    }

    #[tracing_attributes::instrument]
    async fn handle_incoming(self, incoming: DataChanMsg, start_pos: u64) {
        match incoming {
            DataChanMsg::Abort => {
                slog::info!(self.logger, "Data channel abort received");
            }
            DataChanMsg::ExternalCommand(command) => {
                // (The path is copied inside the macro: only when debug lines are built in.)
                slog::debug!(self.logger, "Data channel command received: {:?}", command; "path" => command.path().unwrap_or_default());
                self.execute_command(command, start_pos).await;
            }
        }
    }

    // Each command's future is boxed: by value, this future (and those of `handle_incoming` and
    // `run` around it) would be as large as the largest of them (7,944 bytes, measured with
    // `size_of_val`), moved by `memcpy` at every level it passes; boxed, one allocation holds
    // only the command's own (a download's: 3,024 bytes).
    #[tracing_attributes::instrument]
    async fn execute_command(self, cmd: DataChanCmd, start_pos: u64) {
        match cmd {
            DataChanCmd::Retr { path } => {
                Box::pin(self.exec_retr(path, start_pos)).await;
            }
            DataChanCmd::Stor { path } => {
                Box::pin(self.exec_stor(path, start_pos)).await;
            }
            DataChanCmd::Appe { path } => {
                Box::pin(self.exec_appe(path)).await;
            }
            DataChanCmd::List { path, .. } => {
                Box::pin(self.exec_list_variant(path, ListCommand::List)).await;
            }
            DataChanCmd::Nlst { path } => {
                Box::pin(self.exec_list_variant(path, ListCommand::Nlst)).await;
            }
            DataChanCmd::Mlsd { path } => {
                Box::pin(self.exec_mlsd(path)).await;
            }
        }
    }

    /// Sends a transfer's `150` (see [`TransferSender::reply_first`]).
    async fn reply_first(&self, text: String) {
        let _ = self.control_msg_tx.reply_first(Reply::new_with_string(ReplyCode::FileStatusOkay, text)).await;
    }

    /// Sends a reply on the control channel.
    async fn reply(&self, code: ReplyCode, text: String) {
        let _ = self
            .control_msg_tx
            .send(ControlChanMsg::CommandChannelReply(Reply::new_with_string(code, text)))
            .await;
    }

    #[tracing_attributes::instrument]
    async fn exec_retr(self, path: String, start_pos: u64) {
        let path = self.cwd.join(path);
        let tx: TransferSender = self.control_msg_tx.clone();
        // `550` before any `150` when there is nothing to send (clients such as rclone and tnftp
        // cannot tell a `550` after a `150` from a failed transfer).
        match self.storage.metadata_for_download((*self.user).as_ref().unwrap(), &path).await {
            Err(err) => {
                let _ = tx.send(ControlChanMsg::CommandChannelReply(storage_error(&err, Some(&path)))).await;
                return;
            }
            Ok(metadata) if metadata.is_dir() => {
                self.reply(ReplyCode::FileError, format!("{}: is a folder, not a file", printable(&path))).await;
                return;
            }
            Ok(metadata) => {
                let size = metadata.len().saturating_sub(start_pos);
                self.reply_first(opening_download(&path, size)).await;
            }
        }
        let mut output = match Self::writer(self.socket, self.ftps_mode, "retr", self.stall_limit).await {
            Ok(output) => output,
            Err(error) => return tls_failed(&self.logger, &tx, error).await,
        };

        let start_time = Instant::now();
        let result = self
            .storage
            .get_into((*self.user).as_ref().unwrap(), path.clone(), start_pos, &mut output)
            .await;

        if let Err(err) = output.shutdown().await {
            match err.kind() {
                std::io::ErrorKind::BrokenPipe => {
                    slog::debug!(self.logger, "Output stream was already closed by peer after RETR: {:?}", err);
                }
                std::io::ErrorKind::NotConnected => {
                    slog::debug!(self.logger, "Output stream was already closed after RETR: {:?}", err);
                }
                _ => slog::warn!(self.logger, "Could not shutdown output stream after RETR: {:?}", err),
            }
        }

        let duration = start_time.elapsed();
        match result {
            Ok(bytes_copied) => {
                slog::info!(
                    self.logger,
                    "Successful RETR {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes_copied),
                    TransferSpeed(bytes_copied as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                // only register transfer of a single file transfer
                if start_pos == 0 {
                    metrics::inc_transferred("retr", "success");
                }

                if let Err(err) = tx
                    .send(ControlChanMsg::SentData {
                        bytes: bytes_copied,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful RETR: {:?}", err);
                }
            }
            Err(err) => {
                let io_error_kind = err.get_io_error().map(|e| e.kind());

                if io_error_kind == Some(std::io::ErrorKind::BrokenPipe) {
                    if start_pos == 0 {
                        slog::warn!(
                            self.logger,
                            "Client halted RETR transfer (BrokenPipe). Certain FTP clients may do this to download file sections separately, in which case RESTarts may occur and will be logged at DEBUG level. Refer to your FTP client's documentation if this causes issues. Path {:?}; Duration {} (number of bytes copied unknown).",
                            &path,
                            HumanDuration(duration)
                        );
                    } else {
                        slog::debug!(
                            self.logger,
                            "RETR transfer stopped by client (BrokenPipe). Remember, this could be standard for some FTP clients. Path {:?}; Duration {} (number of bytes copied unknown); start_pos {}",
                            &path,
                            HumanDuration(duration),
                            start_pos
                        );
                    }
                } else {
                    slog::warn!(
                        self.logger,
                        "Error during RETR {:?} transfer after {}: {:?}; start_pos={}",
                        &path,
                        HumanDuration(duration),
                        err,
                        start_pos
                    );
                }

                // only register transfer errors for a single file transfer once
                if start_pos == 0 {
                    categorize_and_register_error(&self.logger, &err, "retr");
                }

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::warn!(self.logger, "Could not notify control channel of error with RETR: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_stor(self, path: String, start_pos: u64) {
        let path = self.cwd.join(path);
        let tx = self.control_msg_tx.clone();

        let start_time = Instant::now();
        let input = match Self::reader(self.socket, self.ftps_mode, "stor", self.stall_limit).await {
            Ok(input) => input,
            Err(error) => return tls_failed(&self.logger, &tx, error).await,
        };
        let put_result = self.storage.put((*self.user).as_ref().unwrap(), input, path.clone(), start_pos).await;
        let duration = start_time.elapsed();

        match put_result {
            Ok(bytes) => {
                slog::info!(
                    self.logger,
                    "Successful STOR {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes),
                    TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                // only register transfer of a single file transfer
                if start_pos == 0 {
                    metrics::inc_transferred("stor", "success");
                }

                if let Err(err) = tx
                    .send(ControlChanMsg::WrittenData {
                        bytes,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful STOR: {:?}", err);
                }
            }
            Err(err) => {
                slog::warn!(self.logger, "Error during STOR transfer after {}: {:?}", HumanDuration(duration), err);

                // only register transfer errors for a single file transfer once
                if start_pos == 0 {
                    categorize_and_register_error(&self.logger, &err, "stor");
                }

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with STOR: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_appe(self, path: String) {
        let path = self.cwd.join(&path);
        let tx = self.control_msg_tx.clone();

        // Get current file size, or 0 if file doesn't exist
        let start_pos = match self.storage.metadata((*self.user).as_ref().unwrap(), &path).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };

        let start_time = Instant::now();
        let input = match Self::reader(self.socket, self.ftps_mode, "appe", self.stall_limit).await {
            Ok(input) => input,
            Err(error) => return tls_failed(&self.logger, &tx, error).await,
        };
        let put_result = self.storage.put((*self.user).as_ref().unwrap(), input, path.clone(), start_pos).await;
        let duration = start_time.elapsed();

        match put_result {
            Ok(bytes) => {
                slog::info!(
                    self.logger,
                    "Successful APPE {:?}; Duration {}; Bytes copied {}; Transfer speed {}; start_pos={}",
                    &path,
                    HumanDuration(duration),
                    HumanBytes(bytes),
                    TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                    start_pos,
                );

                metrics::inc_transferred("appe", "success");

                if let Err(err) = tx
                    .send(ControlChanMsg::WrittenData {
                        bytes,
                        path: path.to_string_lossy().to_string(),
                    })
                    .await
                {
                    slog::error!(self.logger, "Could not notify control channel of successful APPE: {:?}", err);
                }
            }
            Err(err) => {
                slog::warn!(self.logger, "Error during APPE transfer after {}: {:?}", HumanDuration(duration), err);

                categorize_and_register_error(&self.logger, &err, "appe");

                if let Err(err) = tx.send(ControlChanMsg::StorageError(err)).await {
                    slog::error!(self.logger, "Could not notify control channel of error with APPE: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_list_variant(self, path: Option<String>, command: ListCommand) {
        let path = self.resolve_path(path);
        let tx = self.control_msg_tx.clone();
        let start_time = Instant::now();

        let list_result = match command {
            ListCommand::List => self.storage.list_fmt((*self.user).as_ref().unwrap(), path.clone()).await,
            ListCommand::Nlst => self
                .storage
                .nlst((*self.user).as_ref().unwrap(), path.clone())
                .await
                .map_err(|e| Error::new(ErrorKind::PermanentDirectoryNotAvailable, e)),
        };

        match list_result {
            Ok(cursor) => {
                // `150` only once there is a listing to send.
                self.reply_first("Sending directory list".to_string()).await;
                let mut output = match Self::writer(self.socket, self.ftps_mode.clone(), command.as_lower_str(), self.stall_limit).await {
                    Ok(output) => output,
                    Err(error) => return tls_failed(&self.logger, &tx, error).await,
                };
                slog::debug!(self.logger, "Copying future for {}", command.as_str());
                let mut input = cursor;
                let result = tokio::io::copy(&mut input, &mut output).await;

                if let Err(err) = output.shutdown().await {
                    match err.kind() {
                        std::io::ErrorKind::BrokenPipe => {
                            slog::debug!(self.logger, "Output stream was already closed by peer after {}: {:?}", command.as_str(), err);
                        }
                        std::io::ErrorKind::NotConnected => {
                            slog::debug!(self.logger, "Output stream was already closed after {}: {:?}", command.as_str(), err);
                        }
                        _ => slog::warn!(self.logger, "Could not shutdown output stream after {}: {:?}", command.as_str(), err),
                    }
                }
                let duration = start_time.elapsed();

                match result {
                    Ok(bytes) => {
                        slog::info!(
                            self.logger,
                            "Successful LIST {:?}; Duration {}; Bytes copied {}; Transfer speed {}",
                            path,
                            HumanDuration(duration),
                            HumanBytes(bytes),
                            TransferSpeed(bytes as f64 / duration.as_secs_f64()),
                        );
                        metrics::inc_transferred(command.as_lower_str(), "success");
                        if let Err(err) = tx.send(ControlChanMsg::DirectorySuccessfullyListed).await {
                            slog::error!(self.logger, "Could not notify control channel of error with {}: {:?}", command.as_str(), err);
                        }
                    }
                    Err(e) => {
                        let duration = start_time.elapsed();
                        slog::warn!(
                            self.logger,
                            "Failed to send directory list for path {:?} ({} command) after {}: {:?}",
                            path,
                            command.as_str(),
                            HumanDuration(duration),
                            e,
                        );

                        let err = Error::from(e);
                        categorize_and_register_error(&self.logger, &err, command.as_lower_str());
                        // The listing broke off: the client gets a final reply all the same.
                        let _ = tx.send(ControlChanMsg::ConnectionReset).await;
                    }
                }
            }
            Err(err) => {
                let duration = start_time.elapsed();

                slog::warn!(
                    self.logger,
                    "Failed to retrieve directory list for path {:?} ({} command) from storage backend after {}: {:?}",
                    path,
                    command.as_str(),
                    HumanDuration(duration),
                    err,
                );

                categorize_and_register_error(&self.logger, &err, command.as_lower_str());

                if let Err(err) = tx.send(ControlChanMsg::CommandChannelReply(storage_error(&err, Some(&path)))).await {
                    slog::error!(self.logger, "Could not notify control channel of error with {}: {:?}", command.as_str(), err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn exec_mlsd(self, path: Option<String>) {
        let path = self.resolve_path(path);
        let tx = self.control_msg_tx.clone();
        let start_time = Instant::now();

        let list_result = self.storage.list((*self.user).as_ref().unwrap(), path.clone()).await;

        match list_result {
            Ok(files) => {
                let mut buffer = String::new();
                for file_info in files {
                    let filename = file_info
                        .path
                        .as_path()
                        .components()
                        .next_back()
                        .map(|component| component.as_os_str().to_string_lossy())
                        .unwrap_or("unknown".into());

                    let perm = self.storage.perm_fact((*self.user).as_ref().unwrap(), file_info.metadata.is_dir());
                    let facts_str = crate::server::controlchan::commands::mlst::format_facts(&file_info.metadata, perm.as_deref(), self.mlst_facts);
                    let line = format!("{} {}", facts_str, filename);
                    buffer.push_str(&line);
                    buffer.push_str("\r\n");
                }

                // `150` only once there is a listing to send.
                self.reply_first("Sending directory list".to_string()).await;
                let mut output = match Self::writer(self.socket, self.ftps_mode.clone(), "mlsd", self.stall_limit).await {
                    Ok(output) => output,
                    Err(error) => return tls_failed(&self.logger, &tx, error).await,
                };
                // Send the formatted data
                let mut input = std::io::Cursor::new(buffer.into_bytes());
                let result = tokio::io::copy(&mut input, &mut output).await;

                if let Err(err) = output.shutdown().await {
                    match err.kind() {
                        std::io::ErrorKind::BrokenPipe => {
                            slog::debug!(self.logger, "Output stream was already closed by peer after MLSD: {:?}", err);
                        }
                        std::io::ErrorKind::NotConnected => {
                            slog::debug!(self.logger, "Output stream was already closed after MLSD: {:?}", err);
                        }
                        _ => slog::warn!(self.logger, "Could not shutdown output stream after MLSD: {:?}", err),
                    }
                }

                let duration = start_time.elapsed();

                match result {
                    Ok(bytes) => {
                        slog::info!(
                            self.logger,
                            "Successful MLSD {:?}; Duration {}; Bytes copied {}; Transfer speed {}",
                            path,
                            HumanDuration(duration),
                            HumanBytes(bytes),
                            TransferSpeed(bytes as f64 / duration.as_secs_f64())
                        );

                        metrics::inc_transferred("mlsd", "success");

                        if let Err(err) = tx.send(ControlChanMsg::DirectorySuccessfullyListed).await {
                            slog::error!(self.logger, "Could not notify control channel of successful MLSD: {:?}", err);
                        }
                    }
                    Err(err) => {
                        slog::warn!(
                            self.logger,
                            "Failed to copy MLSD data to client after {}. Error: {:?}",
                            HumanDuration(duration),
                            err
                        );
                        categorize_and_register_error(&self.logger, &Error::from(err), "mlsd");
                        // The listing broke off (the data connection, not the storage): `426`,
                        // as for `LIST` and `NLST`.
                        if let Err(err) = tx.send(ControlChanMsg::ConnectionReset).await {
                            slog::error!(self.logger, "Could not notify control channel of failed MLSD: {:?}", err);
                        }
                    }
                }
            }
            Err(err) => {
                let duration = start_time.elapsed();
                slog::warn!(
                    self.logger,
                    "Failed to retrieve directory list for path {:?} (MLSD command) from storage backend after {}: {:?}",
                    path,
                    HumanDuration(duration),
                    err,
                );

                categorize_and_register_error(&self.logger, &err, "mlsd");

                if let Err(err) = tx.send(ControlChanMsg::CommandChannelReply(storage_error(&err, Some(&path)))).await {
                    slog::error!(self.logger, "Could not notify control channel of error with MLSD: {:?}", err);
                }
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn writer(
        socket: DataStream,
        ftps_mode: FtpsConfig,
        command: &'static str,
        stall_limit: Duration,
    ) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin + Sync>> {
        match ftps_mode {
            FtpsConfig::Off => Ok(Box::new(MeasuringWriter::new(socket, command, stall_limit)) as Box<dyn AsyncWrite + Send + Unpin + Sync>),
            FtpsConfig::Building { .. } => panic!("Illegal state"),
            FtpsConfig::On { tls_config } => {
                let tls_stream = tls_handshake(tls_config, socket).await?;
                Ok(Box::new(MeasuringWriter::new(tls_stream, command, stall_limit)) as Box<dyn AsyncWrite + Send + Unpin + Sync>)
            }
        }
    }

    #[tracing_attributes::instrument]
    async fn reader(
        socket: DataStream,
        ftps_mode: FtpsConfig,
        command: &'static str,
        stall_limit: Duration,
    ) -> std::io::Result<Box<dyn AsyncRead + Send + Unpin + Sync>> {
        match ftps_mode {
            FtpsConfig::Off => Ok(Box::new(MeasuringReader::new(socket, command, stall_limit)) as Box<dyn AsyncRead + Send + Unpin + Sync>),
            FtpsConfig::Building { .. } => panic!("Illegal state"),
            FtpsConfig::On { tls_config } => {
                let tls_stream = tls_handshake(tls_config, socket).await?;
                Ok(Box::new(MeasuringReader::new(
                    CloseNotifyOnEof {
                        stream: tls_stream,
                        closing: false,
                    },
                    command,
                    stall_limit,
                )) as Box<dyn AsyncRead + Send + Unpin + Sync>)
            }
        }
    }

    fn resolve_path(&self, path: Option<String>) -> PathBuf {
        match path {
            Some(path) => {
                if path == "." {
                    self.cwd.clone()
                } else {
                    self.cwd.join(path)
                }
            }
            None => self.cwd.clone(),
        }
    }
}

/// The answer to an `ABOR` that cut a transfer (or a transfer command still waiting for its
/// data connection) short: `426`, then `226` (RFC 959).
pub(crate) async fn answer_aborted(tx: &TransferSender) {
    for delivered in aborted(tx) {
        let _ = tx.deliver(delivered).await;
    }
}

/// [`answer_aborted`] from a command handler, which runs in the control loop: the replies are
/// queued without waiting (the loop cannot make room on its own channel while it waits in the
/// handler); should the channel be full, a task sends what did not fit, in order.
pub(crate) fn answer_aborted_from_the_control_loop(tx: TransferSender) {
    queue_from_the_control_loop(&tx, aborted(&tx));
}

/// The answer to an `ABOR` that found no data connection (none was opened, or it gave up just
/// now), from its handler: queued on the control loop's channel like [`answer_aborted_from_the_control_loop`],
/// behind what the data channel sent before it gave up (the `425` of a timeout that came just
/// then), so that the transfer command's reply comes before `ABOR`'s.
pub(crate) fn answer_nothing_to_abort_from_the_control_loop(tx: TransferSender) {
    queue_from_the_control_loop(&tx, [TransferSender::abor_answer(nothing_to_abort())]);
}

/// Answers a transfer that its task left without a final reply, when dropped before [`Self::done`]:
/// a panic (in the storage back-end, or a bug here) unwinds through the transfer, or the
/// runtime shuts down. The client gets `451` about the transfer (and `226` for an `ABOR` that
/// was waiting for it), so the control loop stops waiting for them (the commands held behind
/// them run, a `QUIT` goes through), and `not_busy` runs (the session is no longer marked busy,
/// so its idle timeout applies again). Without it such a session waited for ever.
struct AnswersAnUnfinishedTransfer<'a, F: FnOnce()> {
    tx: TransferSender,
    /// The transfer's `ABOR`s (the transfer races them while it runs).
    aborts: &'a mut Receiver<()>,
    not_busy: Option<F>,
}

impl<'a, F: FnOnce()> AnswersAnUnfinishedTransfer<'a, F> {
    fn new(tx: TransferSender, aborts: &'a mut Receiver<()>, not_busy: F) -> Self {
        AnswersAnUnfinishedTransfer {
            tx,
            aborts,
            not_busy: Some(not_busy),
        }
    }

    /// The transfer sent its final reply: nothing to do.
    fn done(mut self) {
        self.not_busy = None;
    }
}

impl<F: FnOnce()> Drop for AnswersAnUnfinishedTransfer<'_, F> {
    fn drop(&mut self) {
        let Some(not_busy) = self.not_busy.take() else { return };
        not_busy();
        let reply = Reply::new(ReplyCode::LocalError, "The transfer ended unexpectedly: local error in processing");
        let failed = self.tx.about_the_transfer(ControlChanMsg::CommandChannelReply(reply));
        match self.aborts.try_recv() {
            Ok(()) => queue_from_the_control_loop(&self.tx, [failed, TransferSender::abor_answer(nothing_to_abort())]),
            Err(_) => queue_from_the_control_loop(&self.tx, [failed]),
        }
    }
}

/// Queues `replies` on the control loop's channel without waiting; should the channel be full,
/// a task sends what did not fit, in order.
fn queue_from_the_control_loop<const N: usize>(tx: &TransferSender, replies: [Box<Delivered>; N]) {
    let mut replies = replies.into_iter();
    for delivered in replies.by_ref() {
        if let Err(delivered) = tx.try_deliver(delivered) {
            let rest: Vec<Box<Delivered>> = std::iter::once(delivered).chain(replies).collect();
            let tx = tx.clone();
            // (Outside a runtime, as when a transfer is dropped at its shutdown, there is nobody
            // left to answer.)
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            runtime.spawn(async move {
                for delivered in rest {
                    let _ = tx.deliver(delivered).await;
                }
            });
            return;
        }
    }
}

/// `426` about the transfer `tx` is about, then `ABOR`'s `226`.
fn aborted(tx: &TransferSender) -> [Box<Delivered>; 2] {
    [
        tx.about_the_transfer(ControlChanMsg::CommandChannelReply(Reply::new(
            ReplyCode::ConnectionClosed,
            "Connection closed; transfer aborted",
        ))),
        TransferSender::abor_answer(ControlChanMsg::CommandChannelReply(Reply::new(
            ReplyCode::ClosingDataConnection,
            "ABOR successful",
        ))),
    ]
}

/// The answer to an `ABOR` that came before any transfer command: the data connection (or
/// passive port) is closed.
pub(crate) async fn answer_nothing_to_abort(tx: &TransferSender) {
    let _ = tx.answer_abor(nothing_to_abort()).await;
}

/// `226`: `ABOR` found no transfer to cut short.
fn nothing_to_abort() -> ControlChanMsg {
    ControlChanMsg::CommandChannelReply(Reply::new(ReplyCode::ClosingDataConnection, "Data connection closed; no transfer to abort"))
}

/// A data connection giving up (timed out, or its accept failed): its channels are closed, so that
/// a later transfer command or `ABOR` finds them closed and its handler answers it, and what
/// reached them before is answered here: a transfer command `425` (`reason`), then an `ABOR`
/// `226`. (Dropped unread, they went unanswered, and the control loop held the next command for
/// the data connection timeout and more.)
pub(crate) async fn answer_what_came_before_giving_up(
    commands: Option<&mut Receiver<TransferCmd>>,
    aborts: &mut Receiver<()>,
    tx: &TransferSender,
    reason: &str,
) {
    if let Some(commands) = commands {
        commands.close();
        if let Ok(command) = commands.try_recv() {
            answer_cant_open(&tx.for_transfer(command.number), reason).await;
        }
    }
    aborts.close();
    if aborts.try_recv().is_ok() {
        answer_nothing_to_abort(tx).await;
    }
}

/// Answers a transfer command whose data connection could not be had: `425` and why.
pub(crate) async fn answer_cant_open(tx: &TransferSender, reason: &str) {
    let reply = Reply::new_with_string(ReplyCode::CantOpenDataConnection, format!("Can't open data connection: {}", reason));
    let _ = tx.send(ControlChanMsg::CommandChannelReply(reply)).await;
}

/// How long a TLS handshake on a data connection may take.
const DATA_TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The server side of a data connection's TLS handshake, bounded in time.
async fn tls_handshake(tls_config: std::sync::Arc<rustls::ServerConfig>, socket: DataStream) -> std::io::Result<tokio_rustls::server::TlsStream<DataStream>> {
    let acceptor: TlsAcceptor = tls_config.into();
    match tokio::time::timeout(DATA_TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(accepted) => accepted,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the TLS handshake timed out")),
    }
}

/// Answers `425` for a data connection whose TLS handshake failed (it used to panic the data
/// task: no reply, and the session's idle timeout stayed off).
async fn tls_failed(logger: &slog::Logger, tx: &TransferSender, error: std::io::Error) {
    slog::warn!(logger, "TLS handshake on the data connection failed: {}", error);
    let reply = Reply::new_with_string(
        ReplyCode::CantOpenDataConnection,
        format!("TLS negotiation on the data connection failed: {}", error),
    );
    let _ = tx.send(ControlChanMsg::CommandChannelReply(reply)).await;
}

/// How long a data connection the client closed before sending its command (an empty upload,
/// or one it gave up on) waits for that command.
const CLOSED_DATA_CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Gives up on the session's pending data connection: its channels are dropped, and a transfer
/// command that was waiting for it is answered `425` (so that no command ends on `150`, or on
/// nothing, forever); later ones get `425 No data connection established` at once.
pub(crate) async fn fail_pending<Storage, User>(session_arc: &SharedSession<Storage, User>, reason: &str)
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    let (control_msg_tx, pending) = {
        let mut session = session_arc.lock().await;
        session.data_cmd_tx = None;
        session.data_abort_tx = None;
        session.data_abort_rx = None;
        let pending = session.data_cmd_rx.take().and_then(|mut rx| rx.try_recv().ok());
        (session.control_msg_tx.clone(), pending)
    };
    if let (Some(pending), Some(tx)) = (pending, control_msg_tx) {
        answer_cant_open(&tx.for_transfer(pending.number), reason).await;
    }
}

/// Starts processing for the data connection. This will spawn a new async task that will wait for
/// a command from the control channel after which it will start to process the specified socket
/// that is connected to the client.
///
/// logger: logger set up with needed context for use by the data channel.
/// session_arc: the user session that is also shared with the control channel.
/// socket: the data socket we'll be working with.
#[tracing_attributes::instrument]
pub async fn spawn_processing<Storage, User>(logger: slog::Logger, session_arc: SharedSession<Storage, User>, socket: TcpStream)
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    if let Some(command_executor) = prepare_executor(logger, &session_arc, socket).await {
        tokio::spawn(command_executor.execute(session_arc));
    }
}

/// Runs the transfer `command` over `socket`, already accepted from the client, in the calling
/// task (a passive data connection's: see `passive_common`); `data_abort_rx` is the session's
/// abort receiver, which the caller has taken.
pub(crate) async fn run_command<Storage, User>(
    logger: slog::Logger,
    session_arc: SharedSession<Storage, User>,
    socket: DataStream,
    command: TransferCmd,
    mut data_abort_rx: Receiver<()>,
) where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    let command_executor = {
        let mut session = session_arc.lock().await;
        executor(&mut session, logger, socket, None, None)
    };
    if let Some(command_executor) = command_executor {
        command_executor.run(command, &mut data_abort_rx, &session_arc).await;
        session_arc.lock().await.data_busy = false;
    }
}

/// Checks the data connection's address and takes the session's pending data channel for the
/// executor; `None` (after answering a waiting command `425` when the connection is refused)
/// when there is nothing to run.
async fn prepare_executor<Storage, User>(
    logger: slog::Logger,
    session_arc: &SharedSession<Storage, User>,
    mut socket: TcpStream,
) -> Option<DataCommandExecutor<Storage, User>>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    let mut session = session_arc.lock().await;
    match socket.peer_addr() {
        Ok(datachan_addr) => {
            let controlchan_ip = session.source.ip();
            // Through a proxy (patch 20) the data connection may come from the proxy.
            let from_proxy = session.proxy == Some(datachan_addr.ip().to_canonical());
            if controlchan_ip != datachan_addr.ip() && !from_proxy {
                if let Err(err) = socket.shutdown().await {
                    slog::error!(
                        logger,
                        "Couldn't close datachannel for IP ({}) that does not match the IP({}) of the control channel: {:?}",
                        datachan_addr.ip(),
                        controlchan_ip,
                        err
                    )
                } else {
                    slog::warn!(
                        logger,
                        "Closing datachannel for IP ({}) that does not match the IP({}) of the control channel.",
                        datachan_addr.ip(),
                        controlchan_ip
                    )
                }
                drop(session);
                fail_pending(session_arc, "the data connection came from another address").await;
                return None;
            }
        }
        Err(err) => {
            slog::error!(logger, "Couldn't determine data channel address: {:?}", err);
            drop(session);
            fail_pending(session_arc, "the data connection closed at once").await;
            return None;
        }
    }
    let Some(data_cmd_rx) = session.data_cmd_rx.take() else {
        slog::error!(logger, "Data loop command receiver expected to be set up. Aborting data loop.");
        return None;
    };
    let Some(data_abort_rx) = session.data_abort_rx.take() else {
        slog::error!(logger, "Data loop abort receiver expected to be set up. Aborting data loop.");
        return None;
    };
    executor(&mut session, logger, DataStream::registered(socket), Some(data_cmd_rx), Some(data_abort_rx))
}

/// The executor of the data connection `socket`, with what it needs copied out of the locked
/// `session`, which it marks busy (the control channel's idle timeout waits for it).
fn executor<Storage, User>(
    session: &mut crate::server::session::Session<Storage, User>,
    logger: slog::Logger,
    socket: DataStream,
    data_cmd_rx: Option<Receiver<TransferCmd>>,
    data_abort_rx: Option<Receiver<()>>,
) -> Option<DataCommandExecutor<Storage, User>>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    let username = session.username.as_ref().cloned().unwrap_or_else(|| String::from("unknown"));
    let logger = logger.new(slog::o!("username" => username));
    let Some(control_msg_tx) = session.control_msg_tx.clone() else {
        slog::error!(logger, "Control loop message sender expected to be set up. Aborting data loop.");
        return None;
    };
    let ftps_mode = if session.data_tls { session.ftps_config.clone() } else { FtpsConfig::Off };
    // The control channel need to know if the data channel is busy so that it doesn't time out
    // while the session is still in progress.
    session.data_busy = true;
    Some(DataCommandExecutor {
        user: session.user.clone(),
        socket,
        control_msg_tx,
        storage: Arc::clone(&session.storage),
        cwd: session.cwd.clone(),
        mlst_facts: session.mlst_facts,
        ftps_mode,
        stall_limit: session.idle_session_timeout,
        logger,
        data_abort_rx,
        data_cmd_rx,
    })
}

use std::time::Duration;

struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_secs = self.0.as_secs();

        let hours = total_secs / 3600;
        let minutes = (total_secs % 3600) / 60;
        let seconds = total_secs % 60;
        let millis = self.0.subsec_millis();

        if hours > 0 {
            write!(f, "{}h {}m {}s {}ms", hours, minutes, seconds, millis)
        } else if minutes > 0 {
            write!(f, "{}m {}s {}ms", minutes, seconds, millis)
        } else if seconds > 0 {
            write!(f, "{}s {}ms", seconds, millis)
        } else {
            write!(f, "{}ms", millis)
        }
    }
}

struct HumanBytes(u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1024;
        const MIB: u64 = KIB * 1024;
        const GIB: u64 = MIB * 1024;
        const TIB: u64 = GIB * 1024;

        if self.0 >= TIB {
            write!(f, "{:.2} TiB", (self.0 as f64) / (TIB as f64))
        } else if self.0 >= GIB {
            write!(f, "{:.2} GiB", (self.0 as f64) / (GIB as f64))
        } else if self.0 >= MIB {
            write!(f, "{:.2} MiB", (self.0 as f64) / (MIB as f64))
        } else if self.0 >= KIB {
            write!(f, "{:.2} KiB", (self.0 as f64) / (KIB as f64))
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

struct TransferSpeed(f64);

impl fmt::Display for TransferSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kb_per_second = self.0 / 1024.0;
        if kb_per_second < 1.0 {
            return write!(f, "{:.2} B/s", self.0);
        }

        let mb_per_second = kb_per_second / 1024.0;
        if mb_per_second < 1.0 {
            return write!(f, "{:.2} KB/s", kb_per_second);
        }

        let gb_per_second = mb_per_second / 1024.0;
        if gb_per_second < 1.0 {
            return write!(f, "{:.2} MB/s", mb_per_second);
        }

        write!(f, "{:.2} GB/s", gb_per_second)
    }
}

// Collapse the StorageError kind into a client-error, server-error or unknown-error.
// The PermissionDenied is seperated because it depends on specifics whether it is a server or client error
// Unknown errors should not happen but need to be handled
fn categorize_and_register_error(logger: &slog::Logger, err: &Error, command: &'static str) {
    match err.kind() {
        ErrorKind::PermanentFileNotAvailable => metrics::inc_transferred(command, "client-error"),
        ErrorKind::TransientFileNotAvailable | ErrorKind::LocalError => metrics::inc_transferred(command, "server-error"),
        ErrorKind::PermissionDenied => metrics::inc_transferred(command, "permission-error"),
        ErrorKind::ConnectionClosed => {
            if let Some(io_error) = err.get_io_error() {
                match io_error.kind() {
                    std::io::ErrorKind::ConnectionReset => metrics::inc_transferred(command, "client-interrupted"),
                    std::io::ErrorKind::BrokenPipe => {
                        // Clients like Cyberduck appear to close the connection prematurely for chunked downloading, generating many "errors"
                        if command != "retr" {
                            metrics::inc_transferred(command, "client-interrupted");
                        }
                    }
                    std::io::ErrorKind::ConnectionAborted => metrics::inc_transferred(command, "network-error"), // Could be a network issue
                    _ => {
                        slog::debug!(logger, "Unmapped ConnectionClosed io error: {:?}", io_error);
                        metrics::inc_transferred(command, "server-error")
                    }
                }
            }
        }
        _ => {
            slog::debug!(logger, "Unmapped error: {:?}", err);
            metrics::inc_transferred(command, "unknown-error")
        }
    }
}

#[derive(Debug)]
enum ListCommand {
    List,
    Nlst,
}

impl ListCommand {
    fn as_str(&self) -> &'static str {
        match self {
            ListCommand::List => "LIST",
            ListCommand::Nlst => "NLST",
        }
    }
    fn as_lower_str(&self) -> &'static str {
        match self {
            ListCommand::List => "list",
            ListCommand::Nlst => "nlst",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::chancomms::{About, control_chan};

    fn code_of(msg: ControlChanMsg) -> ReplyCode {
        match msg {
            ControlChanMsg::CommandChannelReply(Reply::CodeAndMsg { code, .. }) => code,
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transfer_left_without_a_final_reply_is_answered_451_and_its_session_no_longer_busy() {
        use crate::server::chancomms::CONTROL_CHAN_CAPACITY;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (tx, mut rx) = control_chan();
        let busy = Arc::new(AtomicBool::new(true));
        let not_busy = || {
            let busy = busy.clone();
            move || busy.store(false, Ordering::SeqCst)
        };
        let next = async |rx: &mut crate::server::chancomms::ControlChanReceiver| {
            let delivered = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .expect("in time")
                .expect("a message");
            (code_of(delivered.msg), delivered.about)
        };
        // Done: nothing happens.
        let (_abort_tx, mut aborts) = tokio::sync::mpsc::channel::<()>(1);
        AnswersAnUnfinishedTransfer::new(tx.for_transfers().for_transfer(1), &mut aborts, not_busy()).done();
        assert!(rx.try_recv().is_none());
        assert!(busy.load(Ordering::SeqCst));
        // A panic in the transfer's task (a bug in a storage back-end): 451 about the transfer.
        let transfer = tx.for_transfers().for_transfer(2);
        let guard = not_busy();
        let task = tokio::spawn(async move {
            let (_abort_tx, mut aborts) = tokio::sync::mpsc::channel::<()>(1);
            let _unfinished = AnswersAnUnfinishedTransfer::new(transfer, &mut aborts, guard);
            tokio::task::yield_now().await;
            panic!("a bug in a storage back-end");
        });
        assert!(task.await.expect_err("the task panicked").is_panic());
        assert_eq!(next(&mut rx).await, (ReplyCode::LocalError, About::Transfer(2)));
        assert!(!busy.load(Ordering::SeqCst), "no longer busy");
        assert!(rx.try_recv().is_none(), "nothing more");
        // An `ABOR` was waiting for the transfer: its `226` comes too, after the `451`.
        busy.store(true, Ordering::SeqCst);
        let (abort_tx, mut aborts) = tokio::sync::mpsc::channel::<()>(1);
        abort_tx.send(()).await.expect("room");
        drop(AnswersAnUnfinishedTransfer::new(tx.for_transfers().for_transfer(3), &mut aborts, not_busy()));
        assert_eq!(next(&mut rx).await, (ReplyCode::LocalError, About::Transfer(3)));
        assert_eq!(next(&mut rx).await, (ReplyCode::ClosingDataConnection, About::Abor));
        assert!(!busy.load(Ordering::SeqCst));
        // With the channel full, the answer comes once there is room, after what was queued.
        busy.store(true, Ordering::SeqCst);
        for _ in 0..CONTROL_CHAN_CAPACITY {
            tx.send(ControlChanMsg::CommandChannelReply(Reply::new(ReplyCode::CommandOkay, "queued")))
                .await
                .expect("room");
        }
        let (_abort_tx, mut aborts) = tokio::sync::mpsc::channel::<()>(1);
        drop(AnswersAnUnfinishedTransfer::new(tx.for_transfers().for_transfer(4), &mut aborts, not_busy()));
        for _ in 0..CONTROL_CHAN_CAPACITY {
            assert_eq!(next(&mut rx).await, (ReplyCode::CommandOkay, About::Command));
        }
        assert_eq!(next(&mut rx).await, (ReplyCode::LocalError, About::Transfer(4)));
        assert!(!busy.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn abor_answers_from_the_control_loop_never_wait_for_room_and_keep_their_order() {
        // Queued ahead of them: none (both fit at once), all but one place (one fits), the
        // channel full (a task sends both once the loop makes room).
        let capacity = crate::server::chancomms::CONTROL_CHAN_CAPACITY;
        for queued in [0, capacity - 1, capacity] {
            let (tx, mut rx) = control_chan();
            for _ in 0..queued {
                tx.send(ControlChanMsg::CommandChannelReply(Reply::new(ReplyCode::CommandOkay, "queued")))
                    .await
                    .expect("room");
            }
            // Not async: it returns without waiting, whatever room there is.
            answer_aborted_from_the_control_loop(tx.for_transfers().for_transfer(7));
            let mut codes = Vec::new();
            for _ in 0..queued + 2 {
                let delivered = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                    .await
                    .expect("in time")
                    .expect("a message");
                codes.push((code_of(delivered.msg), delivered.about));
            }
            // The 426 is about the transfer ABOR cut short, the 226 is ABOR's answer.
            let mut expected = vec![(ReplyCode::CommandOkay, About::Command); queued];
            expected.extend([
                (ReplyCode::ConnectionClosed, About::Transfer(7)),
                (ReplyCode::ClosingDataConnection, About::Abor),
            ]);
            assert_eq!(codes, expected, "{queued} queued");
            assert!(rx.try_recv().is_none(), "{queued} queued: nothing more");
        }
    }
}
