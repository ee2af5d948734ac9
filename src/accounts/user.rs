//! [`User`], the session's user as libunftp carries it (a `UserDetail`), with what the user may
//! do: file [`Permission`]s, the FTP folder below which they live (their home), and which SITE
//! services they may call.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use unftp_core::auth::UserDetail;

/// One thing a user may do with files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// `LIST`, `NLST`, `MLSD`, `MLST`, `STAT path`.
    List,
    /// `RETR`.
    Download,
    /// `STOR`/`APPE`/`STOU` of a name that does not exist yet.
    Upload,
    /// `STOR` over an existing file, and resuming one (`REST` + `STOR`, `APPE`).
    Overwrite,
    /// `DELE`, `RMD`.
    Delete,
    /// `RNFR`/`RNTO`.
    Rename,
    /// `MKD`.
    Mkdir,
    /// `MFMT` (setting a file's modification time).
    Chtimes,
}

impl Permission {
    /// Every permission, in the order of the README.
    pub const ALL: [Permission; 8] = [
        Permission::List,
        Permission::Download,
        Permission::Upload,
        Permission::Overwrite,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
        Permission::Chtimes,
    ];

    /// The configuration file's word for it: `list`, `download`, …
    pub fn word(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Download => "download",
            Permission::Upload => "upload",
            Permission::Overwrite => "overwrite",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
            Permission::Chtimes => "chtimes",
        }
    }

    /// Parses a configuration word (`all` is handled by [`Permissions::parse`]).
    pub fn parse(word: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|permission| permission.word() == word)
    }
}

/// A set of permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions(u16);

impl Permissions {
    /// Every permission.
    pub fn all() -> Self {
        Permission::ALL.into_iter().collect()
    }

    /// No permission at all.
    pub fn none() -> Self {
        Permissions(0)
    }

    /// Parses a configuration list: `["all"]` or words of [`Permission::word`].
    pub fn parse(words: &[String]) -> Result<Self, String> {
        let mut set = Permissions::none();
        for word in words {
            if word == "all" {
                set = Permissions::all();
                continue;
            }
            match Permission::parse(word) {
                Some(permission) => set.0 |= 1 << permission as u16,
                None => {
                    let known: Vec<&str> = Permission::ALL.iter().map(|permission| permission.word()).collect();
                    return Err(format!("unknown permission {word:?} (known: all, {})", known.join(", ")));
                }
            }
        }
        Ok(set)
    }

    /// True when `permission` is in the set.
    pub fn allows(self, permission: Permission) -> bool {
        self.0 & (1 << permission as u16) != 0
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(permissions: I) -> Self {
        Permissions(permissions.into_iter().fold(0, |bits, permission| bits | 1 << permission as u16))
    }
}

/// Which SITE services a user may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceGrant {
    /// Every service (`["*"]`, the default).
    All,
    /// These services only (upper case).
    Only(BTreeSet<String>),
}

impl ServiceGrant {
    /// Parses a configuration list: `["*"]` or service names.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        if names.iter().any(|name| name == "*") {
            return Ok(ServiceGrant::All);
        }
        let mut only = BTreeSet::new();
        for name in names {
            if !crate::services::is_valid_name(name) {
                return Err(format!("{name:?} is not a service name (1 to 32 letters, digits, - or _)"));
            }
            only.insert(name.to_ascii_uppercase());
        }
        Ok(ServiceGrant::Only(only))
    }

    /// True when the user may call `service`.
    pub fn allows(&self, service: &str) -> bool {
        match self {
            ServiceGrant::All => true,
            ServiceGrant::Only(names) => names.contains(&service.to_ascii_uppercase()),
        }
    }
}

/// Who a logged-in session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A configured account (`[[users]]`).
    Account,
    /// `anonymous` or `ftp` with the `[anonymous]` policy.
    Anonymous,
    /// Anyone, in open mode (no accounts configured; loopback clients only).
    Open,
    /// Another server of the cluster, proven with the cluster secret.
    Cluster,
}

/// The user of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name the client logged in with.
    pub name: String,
    /// What kind of login it was.
    pub kind: Kind,
    /// The user's home, relative to the FTP folder (`None`: the folder itself).
    pub home: Option<PathBuf>,
    /// What the user may do with files.
    pub permissions: Permissions,
    /// Which SITE services the user may call.
    pub services: ServiceGrant,
}

impl User {
    /// Anyone in open mode: everything, everywhere.
    pub fn open(name: &str) -> Self {
        User {
            name: name.to_string(),
            kind: Kind::Open,
            home: None,
            permissions: Permissions::all(),
            services: ServiceGrant::All,
        }
    }

    /// Another server of the cluster: every service, no file access.
    pub fn cluster(name: &str) -> Self {
        User {
            name: name.to_string(),
            kind: Kind::Cluster,
            home: None,
            permissions: Permissions::none(),
            services: ServiceGrant::All,
        }
    }

    /// True when the user may do `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.allows(permission)
    }
}

impl fmt::Display for User {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.name)
    }
}

impl UserDetail for User {}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn permissions_parse_from_words() {
        let read_only = Permissions::parse(&words(&["list", "download"])).expect("valid");
        assert!(read_only.allows(Permission::List) && read_only.allows(Permission::Download));
        assert!(!read_only.allows(Permission::Upload) && !read_only.allows(Permission::Delete));
        assert_eq!(Permissions::parse(&words(&["all"])).expect("valid"), Permissions::all());
        assert_eq!(Permissions::parse(&[]).expect("valid"), Permissions::none());
        let error = Permissions::parse(&words(&["list", "write"])).expect_err("unknown");
        assert!(error.contains("\"write\"") && error.contains("chtimes"), "{error}");
    }

    #[test]
    fn service_grants_parse_from_names() {
        assert_eq!(ServiceGrant::parse(&words(&["*"])).expect("valid"), ServiceGrant::All);
        let some = ServiceGrant::parse(&words(&["add", "SUB"])).expect("valid");
        assert!(some.allows("ADD") && some.allows("sub") && !some.allows("MUL"));
        assert!(ServiceGrant::parse(&words(&["A B"])).is_err());
        assert!(!ServiceGrant::parse(&[]).expect("valid").allows("ADD"), "an empty list allows nothing");
    }
}
