//! The RFC 959 Abort (`ABOR`) command
//
// This command tells the server to abort the previous FTP
// service command and any associated transfer of data. The
// abort command may require "special action", as discussed in
// the Section on FTP Commands, to force recognition by the
// server.  No action is to be taken if the previous command
// has been completed (including data transfer).  The control
// connection is not to be closed by the server, but the data
// connection must be closed.

use crate::server::controlchan::{
    Reply, ReplyCode,
    error::ControlChanError,
    handler::{CommandContext, CommandHandler},
};
use async_trait::async_trait;
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

#[derive(Debug)]
pub struct Abor;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Abor
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let mut session = args.session.lock().await;
        let logger = args.logger;
        // When a data connection's executor owns the abort receiver (the client connected), it
        // answers: `426` then `226` for a transfer it cut short, `226` otherwise.
        if session.data_abort_rx.is_none()
            && let Some(tx) = session.data_abort_tx.take()
            && tx.try_send(()).is_ok()
        {
            slog::info!(logger, "ABOR passed to the data channel");
            return Ok(Reply::none());
        }
        // No data connection yet (or none any more): forget the pending one, and close a
        // passive listener still waiting (with its place, if data connections are limited).
        session.close_unused_data_connection();
        session.data_abort_tx = None;
        session.data_abort_rx = None;
        // A transfer command already handed to a passive port's task that has not started yet
        // is the transfer this cuts short (the task finds nothing and ends).
        let queued = session.data_cmd_rx.take().and_then(|mut commands| commands.try_recv().ok());
        if let Some(queued) = queued
            && let Some(tx) = session.control_msg_tx.as_ref().map(|tx| tx.for_transfer(queued.number))
        {
            drop(session);
            slog::info!(logger, "ABOR of a transfer command not yet taken by its data channel");
            crate::server::datachan::answer_aborted_from_the_control_loop(tx);
            return Ok(Reply::none());
        }
        // Answered on the control loop's channel: a data connection that gave up just now may
        // have queued its transfer command's `425` there, which comes first.
        match session.control_msg_tx.clone() {
            Some(tx) => {
                drop(session);
                crate::server::datachan::answer_nothing_to_abort_from_the_control_loop(tx);
                Ok(Reply::none())
            }
            None => Ok(Reply::new(ReplyCode::ClosingDataConnection, "No transfer to abort")),
        }
    }
}
