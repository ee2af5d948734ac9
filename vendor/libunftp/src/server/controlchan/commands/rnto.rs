//! The RFC 959 Rename To (`RNTO`) command

use crate::server::ControlChanMsg;
use crate::server::controlchan::{
    Reply, ReplyCode,
    error::ControlChanError,
    handler::{CommandContext, CommandHandler},
};
use async_trait::async_trait;
use std::{path::PathBuf, sync::Arc};
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

#[derive(Debug)]
pub struct Rnto {
    path: PathBuf,
    /// The command before this one was `RNFR` (RFC 959: `RNTO` must follow it immediately).
    after_rnfr: bool,
}

impl Rnto {
    pub fn new(path: PathBuf, after_rnfr: bool) -> Self {
        Rnto { path, after_rnfr }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Rnto
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let CommandContext {
            logger,
            session,
            tx_control_chan,
            ..
        } = args;
        let mut session = session.lock().await;
        let storage = Arc::clone(&session.storage);

        // A pending rename ends here whatever becomes of it; one that other commands came after
        // has ended already (they renamed the file all the same).
        let pending = session.rename_from.take().filter(|_| self.after_rnfr);
        let (from, to) = match pending {
            Some(from) => {
                let to = session.cwd.join(self.path.clone());
                (from, to)
            }
            // RFC 959 answers an `RNTO` out of sequence with `503` (a `450` is a transient error,
            // one a client may retry as it is).
            None => return Ok(Reply::new(ReplyCode::BadCommandSequence, "RNFR first: tell me what file you want to rename")),
        };
        let user = (*session.user).as_ref().unwrap();
        let old_path = from.to_string_lossy().to_string();
        let new_path = to.to_string_lossy().to_string();
        match storage.rename(user, &from, &to).await {
            Ok(_) => {
                slog::info!(logger, "RNTO: Successfully renamed {:?} to {:?}", from, to);
                if let Err(err) = tx_control_chan.send(ControlChanMsg::RenameSuccess { old_path, new_path }).await {
                    slog::warn!(logger, "RNTO: Could not send internal message to notify of RNTO success: {}", err);
                }
            }
            Err(err) => {
                if let Err(err) = tx_control_chan.send(ControlChanMsg::CommandChannelReply(crate::server::controlchan::reply_text::storage_error(&err, Some(std::path::Path::new(&new_path))))).await {
                    slog::warn!(logger, "RNTO: Could not send internal message to notify of RNTO failure: {}", err);
                }
            }
        }
        Ok(Reply::none())
    }
}
