//! The `HELP` command
//
// A HELP request asks for human-readable information from the server. The server may accept this request with code 211 or 214, or reject it with code 502.
//
// A HELP request may include a parameter. The meaning of the parameter is defined by the server. Some servers interpret the parameter as an FTP verb,
// and respond by briefly explaining the syntax of the verb.

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

#[derive(Debug)]
pub struct Help;

/// Every command the control loop dispatches, sorted.
const COMMANDS: [&str; 50] = [
    "ABOR", "ACCT", "ALLO", "APPE", "AUTH", "BYE", "CCC", "CDUP", "CWD", "DELE", "EPRT", "EPSV", "FEAT", "HELP", "LIST", "MDTM",
    "MFMT", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT", "PWD", "QUIT", "REST",
    "RETR", "RMD", "RNFR", "RNTO", "SITE", "SIZE", "STAT", "STOR", "STOU", "STRU", "SYST", "TYPE", "USER", "XCUP", "XCWD", "XMKD",
    "XPWD", "XRMD",
];

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Help
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let mut text: Vec<String> = vec!["The following commands are recognized:".to_string()];
        for row in COMMANDS.chunks(10) {
            text.push(format!(" {}", row.join(" ")));
        }
        let mut site: Vec<&str> = args.site_handlers.keys().map(String::as_str).collect();
        if args.sitemd5 != crate::options::SiteMd5::None {
            site.push("MD5");
        }
        site.sort_unstable();
        if !site.is_empty() {
            text.push(format!("SITE commands: {}", site.join(" ")));
        }
        text.push(format!("Help OK (libunftp {})", env!("CARGO_PKG_VERSION")));
        Ok(Reply::new_multiline(ReplyCode::HelpMessage, text))
    }
}
