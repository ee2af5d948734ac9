//! The RFC 2428 Passive (`EPSV`) command
//
// The EPSV command requests that a server listen on a data port and
// wait for a connection. The EPSV command takes an optional argument.
// The response to this command includes only the TCP port number of the
// listening connection.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::SwitchboardSender,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;

use super::passive_common::{self, LegacyReplyProducer};

#[derive(Debug)]
pub struct Epsv {
    /// The network protocol the client asked for (`EPSV 1`, `EPSV 2`), if it named one.
    protocol: Option<u32>,
}

impl Epsv {
    pub fn new(protocol: Option<u32>) -> Self {
        Epsv { protocol }
    }
}

/// `EPSV ALL` (RFC 2428): only `EPSV` sets up data connections from now on.
#[derive(Debug)]
pub struct EpsvAll;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for EpsvAll
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        args.session.lock().await.epsv_all = true;
        Ok(Reply::new(ReplyCode::CommandOkay, "EPSV ALL ok: only EPSV sets up data connections from now on"))
    }
}

#[async_trait]
impl<Storage, User> LegacyReplyProducer<Storage, User> for Epsv
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
{
    async fn build_reply(&self, _args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError> {
        Ok(make_epsv_reply(port))
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Epsv
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        // RFC 2428: a protocol other than the control connection's gets `522`, naming the one
        // this connection can use (the data connection goes to the control connection's address).
        let ours = if args.local_addr.ip().to_canonical().is_ipv4() { 1 } else { 2 };
        if self.protocol.is_some_and(|protocol| protocol != ours) {
            return Ok(Reply::new_with_string(
                ReplyCode::NetworkProtocolNotSupported,
                format!("Network protocol not supported, use ({ours})"),
            ));
        }
        let sender: Option<SwitchboardSender<Storage, User>> = args.tx_prebound_loop.clone();
        match sender {
            Some(_) => Ok(Reply::new(ReplyCode::CommandNotImplemented, "EPSV not supported in this mode")),
            None => passive_common::handle_legacy_mode(self, args).await,
        }
    }
}

pub fn make_epsv_reply(port: u16) -> Reply {
    Reply::new_with_string(ReplyCode::EnteringExtendedPassiveMode, format!("Entering Extended Passive Mode (|||{}|)", port))
}
