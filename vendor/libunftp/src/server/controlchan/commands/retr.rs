//! The RFC 959 Retrieve (`RETR`) command
//
// This command causes the server-DTP to transfer a copy of the
// file, specified in the pathname, to the server- or user-DTP
// at the other end of the data connection.  The status and
// contents of the file at the server site shall be unaffected.

use crate::{
    auth::UserDetail,
    server::{
        ReplyCode,
        chancomms::DataChanCmd,
        controlchan::{
            Reply,
            command::Command,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;

#[derive(Debug)]
pub struct Retr;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Retr
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let mut session = args.session.lock().await;
        // The path moves from the parsed command to the data channel's (it was copied twice).
        let cmd = match args.parsed_command {
            Command::Retr { path } => DataChanCmd::Retr { path },
            _ => panic!("Programmer error, expected command to be RETR"),
        };
        let cmd = session.transfer_cmd(cmd);

        let logger = args.logger;
        match session.data_cmd_tx.take() {
            // The data channel answers `150` once it has found what to send, or `550` before any
            // `150` when it cannot (the channel is new and has room for this one command).
            Some(tx) => match tx.try_send(cmd) {
                Ok(()) => Ok(Reply::none()),
                Err(err) => {
                    slog::warn!(logger, "RETR: could not notify the data channel: {}", err);
                    Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established"))
                }
            },
            None => {
                slog::warn!(logger, "RETR: no data connection established for RETRing {:?}", cmd.command.path().unwrap_or_default());

                Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established"))
            }
        }
    }
}
