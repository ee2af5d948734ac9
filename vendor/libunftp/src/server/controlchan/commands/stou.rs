//! The RFC 959 Store File Uniquely (`STOU`) command

use crate::server::chancomms::DataChanCmd;
use crate::{
    auth::UserDetail,
    server::controlchan::{
        Reply, ReplyCode,
        error::ControlChanError,
        handler::{CommandContext, CommandHandler},
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::path::Path;
use uuid::Uuid;

// TODO: Write functional test for STOU command.
#[derive(Debug)]
pub struct Stou {
    pub base: Option<String>,
}

#[async_trait]
impl<Storager, User> CommandHandler<Storager, User> for Stou
where
    User: UserDetail + 'static,
    Storager: StorageBackend<User> + 'static,
    Storager::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storager, User>) -> Result<Reply, ControlChanError> {
        let mut session = args.session.lock().await;
        let uuid: String = Uuid::new_v4().to_string();
        // With a name from the client, the unique name is that name and a unique suffix.
        let unique = match &self.base {
            Some(base) => format!("{}.{}", base, &uuid[..8]),
            None => uuid,
        };
        let filename: &Path = std::path::Path::new(&unique);
        let path: String = session.cwd.join(filename).to_string_lossy().to_string();
        let logger = args.logger;
        let cmd = session.transfer_cmd(DataChanCmd::Stor { path });
        match session.data_cmd_tx.take() {
            // Handed over before the reply (the channel is new and has room for this one
            // command), so that an `ABOR` right behind finds it there.
            Some(tx) => match tx.try_send(cmd) {
                // RFC 1123 §4.1.2.9: the reply names the file, as `150 FILE: name`.
                Ok(()) => Ok(Reply::new_with_string(ReplyCode::FileStatusOkay, format!("FILE: {}", filename.to_string_lossy()))),
                Err(err) => {
                    slog::warn!(logger, "STOU: could not notify the data channel: {}", err);
                    Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established"))
                }
            },
            None => {
                slog::warn!(logger, "STOU: no data connection established for STOU file {:?}", cmd.command.path().unwrap_or_default());
                Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established"))
            }
        }
    }
}
