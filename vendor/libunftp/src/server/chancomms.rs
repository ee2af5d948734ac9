//! Contains code pertaining to the communication between the data and control channels.
#![cfg_attr(not(feature = "proxy_protocol"), allow(dead_code, unused_imports))]

use super::session::SharedSession;
use crate::server::controlchan::control_socket::ControlSocket;
use crate::{
    auth::UserDetail,
    server::controlchan::Reply,
    server::session::TraceId,
    storage::{self, StorageBackend},
};
use std::fmt;
use std::sync::Weak;
use thiserror::Error;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::oneshot;

// Commands that can be sent to the data channel / data loop.
#[derive(PartialEq, Eq, Debug)]
pub enum DataChanMsg {
    ExternalCommand(DataChanCmd),
    Abort,
}

#[derive(PartialEq, Eq, Debug)]
pub enum DataChanCmd {
    Retr {
        /// The path to the file the client would like to retrieve.
        path: String,
    },
    Stor {
        /// The path to the file the client would like to store.
        path: String,
    },
    Appe {
        /// The path to the file the client would like to append to.
        path: String,
    },
    List {
        /// Arguments passed along with the list command.
        options: Option<String>,
        /// The path of the file/directory the clients wants to list
        path: Option<String>,
    },
    Nlst {
        /// The path of the file/directory the clients wants to list.
        path: Option<String>,
    },
    Mlsd {
        /// The path of the directory the clients wants to list.
        path: Option<String>,
    },
}

impl DataChanCmd {
    /// Returns the path the command pertains to
    pub fn path(&self) -> Option<String> {
        match self {
            DataChanCmd::Retr { path, .. } => Some(path.clone()),
            DataChanCmd::Stor { path, .. } => Some(path.clone()),
            DataChanCmd::Appe { path, .. } => Some(path.clone()),
            DataChanCmd::List { path, .. } => path.clone(),
            DataChanCmd::Mlsd { path } => path.clone(),
            DataChanCmd::Nlst { path } => path.clone(),
        }
    }
}

/// A transfer command handed to the data channel, with the number the control loop gave it
/// (`Session::transfer_number` when it was handed over): the data channel's messages about it
/// carry that number.
#[derive(PartialEq, Eq, Debug)]
pub struct TransferCmd {
    pub number: u32,
    pub command: DataChanCmd,
    /// The offset `REST` set, taken from the session by the command's handler: it applies to
    /// this transfer only, whether it succeeds or not.
    pub start_pos: u64,
}

/// What a message on the control loop's channel answers, for the loop's waits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum About {
    /// A command handler's answer (its command is the one the loop waits on: patch 37).
    Command,
    /// The data channel's message about the transfer command with this number (its `150`,
    /// `226`, a refusal or an error): a late one of an earlier transfer is not the first reply
    /// of the one the loop waits on.
    Transfer(u32),
    /// The data channel's answer to `ABOR` (its `226`, which comes last).
    Abor,
}

/// A message on the control loop's channel, and what it answers.
#[derive(Debug)]
pub struct Delivered {
    pub msg: ControlChanMsg,
    pub about: About,
    /// The reply in `msg` is out already (written straight to the control connection: see
    /// [`TransferSender::reply_first`]): the loop takes note of it and writes nothing.
    pub written: bool,
}

/// The sending end of the control loop's channel, for command handlers. Messages travel boxed:
/// tokio allocates a channel's slots 32 at a time, and 32 inline `ControlChanMsg`s (48 bytes
/// each) were 1.6 KiB of every idle session.
#[derive(Clone, Debug)]
pub struct ControlChanSender(tokio::sync::mpsc::Sender<Box<Delivered>>);

impl ControlChanSender {
    /// Sends a message to the control loop, waiting for room.
    pub async fn send(&self, msg: ControlChanMsg) -> Result<(), tokio::sync::mpsc::error::SendError<ControlChanMsg>> {
        let about = About::Command;
        self.0.send(Box::new(Delivered { msg, about, written: false })).await.map_err(unboxed)
    }

    /// A sender to the same control loop for the data channel, whose messages are marked so.
    pub fn for_transfers(&self) -> TransferSender {
        TransferSender {
            sender: self.clone(),
            transfer: 0,
            socket: Weak::new(),
        }
    }
}

fn unboxed(error: tokio::sync::mpsc::error::SendError<Box<Delivered>>) -> tokio::sync::mpsc::error::SendError<ControlChanMsg> {
    tokio::sync::mpsc::error::SendError(error.0.msg)
}

/// The data channel's sending end of the control loop's channel: its messages are about a
/// transfer command (numbered: [`TransferSender::for_transfer`]) or answer `ABOR`. (A type of
/// its own rather than a flag in [`ControlChanSender`]: every session's control loop holds a
/// sender, and its size counts for each idle session.)
#[derive(Clone, Debug)]
pub struct TransferSender {
    sender: ControlChanSender,
    transfer: u32,
    /// The control connection, for a transfer's first reply (see [`Self::reply_first`]).
    socket: Weak<ControlSocket>,
}

impl TransferSender {
    /// Sends a message about this sender's transfer command, waiting for room.
    pub async fn send(&self, msg: ControlChanMsg) -> Result<(), tokio::sync::mpsc::error::SendError<ControlChanMsg>> {
        self.deliver(self.about_the_transfer(msg)).await
    }

    /// This sender, writing a transfer's first reply straight to `socket` when it can.
    pub fn writing_to(mut self, socket: Weak<ControlSocket>) -> Self {
        self.socket = socket;
        self
    }

    /// Sends a transfer's first reply (its `150`): written straight to the control connection
    /// when the control loop waits with nothing to write, so that it leaves before the data
    /// rather than after the transfer (a small file's transfer never pauses, and the loop, on
    /// the same worker thread, would write the `150` together with the `226`); the loop is told
    /// either way, as for any reply.
    pub async fn reply_first(&self, reply: Reply) -> Result<(), tokio::sync::mpsc::error::SendError<ControlChanMsg>> {
        let written = self.socket.upgrade().is_some_and(|socket| socket.write_now(&reply));
        let mut delivered = self.about_the_transfer(ControlChanMsg::CommandChannelReply(reply));
        delivered.written = written;
        self.deliver(delivered).await
    }

    /// Sends the answer to `ABOR` (its last reply), waiting for room.
    pub async fn answer_abor(&self, msg: ControlChanMsg) -> Result<(), tokio::sync::mpsc::error::SendError<ControlChanMsg>> {
        self.deliver(Self::abor_answer(msg)).await
    }

    /// Sends a message made by [`Self::about_the_transfer`] or [`Self::abor_answer`], waiting
    /// for room.
    pub async fn deliver(&self, delivered: Box<Delivered>) -> Result<(), tokio::sync::mpsc::error::SendError<ControlChanMsg>> {
        self.sender.0.send(delivered).await.map_err(unboxed)
    }

    /// Queues a message for the control loop if there is room, without waiting (for a command
    /// handler, which runs in the control loop: waiting there for room would wait forever).
    pub fn try_deliver(&self, delivered: Box<Delivered>) -> Result<(), Box<Delivered>> {
        self.sender.0.try_send(delivered).map_err(|error| error.into_inner())
    }

    /// `msg` as a message about this sender's transfer command.
    pub fn about_the_transfer(&self, msg: ControlChanMsg) -> Box<Delivered> {
        Box::new(Delivered {
            msg,
            about: About::Transfer(self.transfer),
            written: false,
        })
    }

    /// `msg` as the answer to `ABOR`.
    pub fn abor_answer(msg: ControlChanMsg) -> Box<Delivered> {
        Box::new(Delivered {
            msg,
            about: About::Abor,
            written: false,
        })
    }

    /// This sender, its messages about the transfer command numbered `transfer`.
    pub fn for_transfer(&self, transfer: u32) -> TransferSender {
        TransferSender {
            sender: self.sender.clone(),
            transfer,
            socket: self.socket.clone(),
        }
    }
}

/// The control loop's receiving end of [`ControlChanSender`].
#[derive(Debug)]
pub struct ControlChanReceiver(tokio::sync::mpsc::Receiver<Box<Delivered>>);

impl ControlChanReceiver {
    /// The next message, or `None` when every sender is gone (boxed as it travelled: the
    /// control loop keeps one waiting, and inline it would take room in every session's loop).
    pub async fn recv(&mut self) -> Option<Box<Delivered>> {
        self.0.recv().await
    }

    /// A message that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Box<Delivered>> {
        self.0.try_recv().ok()
    }
}

/// A control loop's channel, with room for 32 messages (the memory is the same for any capacity
/// up to 32: tokio allocates slots 32 at a time). Far more than can be outstanding at once (a
/// handler's answer, as the loop waits for it before the next command; a transfer's `150`, `226`
/// and `ABOR`'s `426`, `226`; `AUTH`'s upgrade), so that neither a data channel that sends `150`,
/// the data and `226` without waiting (a small file; the loop then writes both at once) nor a
/// handler that sends from inside the loop (`CWD`, `RMD`, `RNTO`, `QUIT`) ever waits for room:
/// the loop that would make it is the one waiting.
pub(crate) const CONTROL_CHAN_CAPACITY: usize = 32;

pub fn control_chan() -> (ControlChanSender, ControlChanReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(CONTROL_CHAN_CAPACITY);
    (ControlChanSender(tx), ControlChanReceiver(rx))
}

/// Messages that can be sent to the control channel loop.
#[derive(Debug)]
#[allow(dead_code)]
pub enum ControlChanMsg {
    /// Permission Denied
    PermissionDenied,
    /// File not found
    NotFound,
    /// Data was successfully sent to the client during a GET
    SentData {
        /// The path as specified by the client
        path: String,
        /// The number of bytes transferred
        bytes: u64,
    },
    /// We've written the data from the client to the StorageBackend
    WrittenData {
        /// The path as specified by the client
        path: String,
        /// The number of bytes transferred
        bytes: u64,
    },
    /// Data connection was unexpectedly closed
    ConnectionReset,
    /// Data connection was closed on purpose or not on purpose. We don't know, but that is FTP
    DataConnectionClosedAfterStor,
    /// Failed to write data to disk
    WriteFailed,
    /// Listed the directory successfully
    DirectorySuccessfullyListed,
    /// Failed to list the directory contents
    DirectoryListFailure,
    /// Successfully cwd
    CwdSuccess,
    /// File successfully deleted
    DelFileSuccess {
        /// The path as specified by the client
        path: String,
    },
    /// File successfully deleted
    RmDirSuccess {
        /// The path as specified by the client
        path: String,
    },
    /// File successfully deleted
    RenameSuccess {
        /// The old path as specified by the client
        old_path: String,
        /// The new path as specified by the client
        new_path: String,
    },
    /// Failed to delete file
    DelFail,
    /// Quit the client connection
    ExitControlLoop,
    /// Successfully created directory
    MkDirSuccess { path: String },
    /// Failed to crate directory
    MkdirFail,
    /// Authentication successful
    AuthSuccess { username: String, trace_id: TraceId },
    /// Authentication failed
    AuthFailed {
        /// What the authenticator said for the client, if anything (see `pass.rs`).
        message: Option<String>,
    },
    /// Sent to switch the control channel to TLS/SSL mode.
    SecureControlChannel,
    /// Sent to switch the control channel from TLS/SSL mode back to plaintext.
    PlaintextControlChannel,
    /// Errors coming from the storage backend
    StorageError(storage::Error),
    /// Reply on the command channel
    CommandChannelReply(Reply),
}

impl fmt::Display for ControlChanMsg {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An error that occurred during port allocation
#[derive(Error, Debug)]
#[error("Could not allocate port")]
pub struct PortAllocationError;

// ProxyLoopMsg is sent to the proxy loop when proxy protocol mode is enabled. See the
// Server::proxy_protocol_mode and Server::listen_proxy_protocol_mode methods.
#[derive(Debug)]
pub(crate) enum SwitchboardMessage<Storage, User>
where
    Storage: StorageBackend<User>,
    User: UserDetail,
{
    /// Command to assign a data port to a session
    AssignDataPortCommand(SharedSession<Storage, User>, oneshot::Sender<Result<Reply, PortAllocationError>>),
    /// Command to clean up an active data channel (used when exiting the control loop)
    CloseDataPortCommand(SharedSession<Storage, User>),
}

pub(crate) type SwitchboardSender<Storage, User> = Sender<SwitchboardMessage<Storage, User>>;
pub(crate) type SwitchboardReceiver<Storage, User> = Receiver<SwitchboardMessage<Storage, User>>;

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_handler_sending_from_inside_the_control_loop_finds_room_whatever_a_transfer_queued() {
        // The most a transfer and its ABOR queue while the loop is busy: 150, 226, 426, 226; and
        // a handler's earlier answer. A handler that sends from inside the loop (CWD, RMD, RNTO,
        // QUIT) must not wait: only the loop it runs in could make room.
        let (tx, mut rx) = control_chan();
        let transfers = tx.for_transfers().for_transfer(1);
        for _ in 0..4 {
            let queued = transfers.send(ControlChanMsg::ExitControlLoop).now_or_never();
            assert!(queued.is_some(), "a transfer's message waited for room");
        }
        for _ in 0..9 {
            assert!(
                tx.send(ControlChanMsg::CwdSuccess).now_or_never().is_some(),
                "a send from inside the loop waited for room"
            );
        }
        let mut received = 0;
        while rx.try_recv().is_some() {
            received += 1;
        }
        assert_eq!(received, 13);
    }
}
