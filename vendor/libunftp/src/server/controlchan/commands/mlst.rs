//! The RFC 3659 Machine List Single (`MLST`) command
//
// This command causes a listing to be sent from the server to the user. If the pathname
// specifies a file or directory, the server will return information about the file or
// directory. The information is returned in a machine-readable format.

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
use chrono::{DateTime, Utc};
use std::sync::Arc;

#[derive(Debug)]
pub struct Mlst {
    path: Option<String>,
}

impl Mlst {
    pub fn new(path: Option<String>) -> Self {
        Mlst { path }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Mlst
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let (user, storage, cwd, facts) = {
            let session = args.session.lock().await;
            (session.user.clone(), Arc::clone(&session.storage), session.cwd.clone(), session.mlst_facts)
        };

        let path = match &self.path {
            Some(p) => cwd.join(p),
            None => cwd,
        };

        let metadata = match storage.metadata((*user).as_ref().unwrap(), &path).await {
            Ok(m) => m,
            Err(e) => return Ok(crate::server::controlchan::reply_text::storage_error(&e, Some(&path))),
        };

        let perm = storage.perm_fact((*user).as_ref().unwrap(), metadata.is_dir());
        let facts_str = format_facts(&metadata, perm.as_deref(), facts);
        let response = format!(" {} {}", facts_str, path.display());
        Ok(Reply::new_multiline(ReplyCode::FileActionOkay, vec![" Listing", &response, "End"]))
    }
}

/// The facts `MLST` and `MLSD` give, of those FEAT offers (`type`, `size`, `modify`, `perm`,
/// `unique`): all of them until the client chooses with `OPTS MLST` (RFC 3659 §7.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts(u8);

impl Facts {
    /// The offered facts by name, in the order they are listed.
    const NAMES: [(&'static str, u8); 5] = [
        ("type", Self::TYPE),
        ("size", Self::SIZE),
        ("modify", Self::MODIFY),
        ("perm", Self::PERM),
        ("unique", Self::UNIQUE),
    ];
    const TYPE: u8 = 1;
    const SIZE: u8 = 2;
    const MODIFY: u8 = 4;
    const PERM: u8 = 8;
    /// Every fact (the default, until the client chooses).
    pub const ALL: Facts = Facts(0b1_1111);
    const UNIQUE: u8 = 16;
    /// Set once the client has chosen (even every offered fact): the facts FEAT does not offer
    /// are then left out.
    const CHOSEN: u8 = 128;

    /// The facts named in `OPTS MLST`'s list (`type;size;`): case does not matter, names this
    /// server does not offer (or `unique` when `unique_offered` is false) are left out, as the
    /// RFC asks.
    pub fn chosen(list: &str, unique_offered: bool) -> Facts {
        let mut bits = 0;
        for name in list.split(';') {
            if let Some((_, bit)) = Self::NAMES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name.trim())) {
                bits |= bit;
            }
        }
        if !unique_offered {
            bits &= !Self::UNIQUE;
        }
        Facts(bits | Self::CHOSEN)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// `type;size;` for the reply to `OPTS MLST`: the facts now given, each followed by `;`.
    pub fn names(self) -> String {
        Self::NAMES
            .iter()
            .filter(|(_, bit)| self.0 & bit != 0)
            .map(|(name, _)| format!("{};", name))
            .collect()
    }

    /// FEAT's `MLST` line: every offered fact, those given marked `*`.
    pub fn feat_line(self, unique_offered: bool) -> String {
        let offered = Self::NAMES.iter().filter(|(_, bit)| unique_offered || *bit != Self::UNIQUE);
        let facts: String = offered
            .map(|(name, bit)| format!("{}{};", name, if self.0 & bit != 0 { "*" } else { "" }))
            .collect();
        format!(" MLST {}", facts)
    }
}

/// Format metadata into machine-readable facts string
///
/// Returns a semicolon-separated list of facts in the format defined by RFC 3659.
/// Both MLST and MLSD use the same fact format, so this function provides
/// consistent formatting for both commands.
///
/// # Arguments
/// * `metadata` - The file/directory metadata to format
/// * `perm` - The `perm` fact, if the storage back-end gives one
/// * `chosen` - The facts the client asked for (`OPTS MLST`)
///
/// # Returns
/// A string containing semicolon-separated facts like "type=file;size=1234;modify=20231201120000;"
/// (empty when no fact is chosen)
pub fn format_facts<M: Metadata>(metadata: &M, perm: Option<&str>, chosen: Facts) -> String {
    let mut facts = Vec::new();

    if chosen.has(Facts::TYPE) {
        facts.push(if metadata.is_dir() { "type=dir" } else { "type=file" }.to_string());
    }

    if chosen.has(Facts::SIZE) {
        facts.push(format!("size={}", metadata.len()));
    }

    if chosen.has(Facts::MODIFY)
        && let Ok(modified) = metadata.modified()
    {
        let dt: DateTime<Utc> = modified.into();
        facts.push(format!("modify={}", dt.format("%Y%m%d%H%M%S")));
    }

    if chosen.has(Facts::PERM)
        && let Some(perm) = perm
    {
        facts.push(format!("perm={}", perm));
    }

    if chosen.has(Facts::UNIQUE)
        && let Some(unique) = metadata.unique()
    {
        facts.push(format!("unique={}", unique));
    }

    // Choosing not to implement create, lang, media-type, charset or most of the
    // UNIX.*, MACOS.* etc ones. The two below are not offered in FEAT: they are given only while
    // the client has not chosen its facts.

    if chosen == Facts::ALL && metadata.uid() > 0 {
        facts.push(format!("unix.uid={}", metadata.uid()));
    }

    if chosen == Facts::ALL && metadata.gid() > 0 {
        facts.push(format!("unix.gid={}", metadata.gid()));
    }

    if facts.is_empty() {
        return String::new();
    }
    format!("{};", facts.join(";"))
}

#[cfg(test)]
mod tests {
    use super::Facts;

    #[test]
    fn opts_mlst_chooses_known_facts_whatever_their_case_and_names_them_in_order() {
        let chosen = Facts::chosen("SIZE;Type;lang;;unique", true);
        assert_eq!(chosen.names(), "type;size;unique;");
        assert_eq!(Facts::chosen("unique;", false).names(), "", "unique is not offered");
        assert_eq!(Facts::chosen("", true).names(), "");
        assert_eq!(Facts::ALL.names(), "type;size;modify;perm;unique;");
        assert_eq!(chosen.feat_line(true), " MLST type*;size*;modify;perm;unique*;");
        assert_eq!(Facts::ALL.feat_line(false), " MLST type*;size*;modify*;perm*;");
        let every = Facts::chosen("type;size;modify;perm;unique;", true);
        assert_eq!(every.names(), Facts::ALL.names());
        assert_ne!(every, Facts::ALL, "chosen, even all of them: the facts FEAT does not offer are left out");
    }
}
