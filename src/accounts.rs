//! Accounts: who may log in and what they may then do. [`Accounts`] holds the configured users
//! (passwords as Argon2id hashes, see [`password`]), the anonymous policy, or neither (*open
//! mode*: anyone may do anything, but only from this machine; the server enforces the
//! loopback part). [`User`] ([`user`]) is what a logged-in session carries.
//!
//! No I/O here; password verification is CPU work that callers put on the blocking pool.

pub mod password;
pub mod user;

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

pub use user::{Kind, Permission, Permissions, ServiceGrant, User};

/// The user names that log in anonymously when `[anonymous]` is configured.
pub const ANONYMOUS_NAMES: [&str; 2] = ["anonymous", "ftp"];

/// One configured account.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// The Argon2id PHC string of its password.
    pub password: String,
    /// Its home, relative to the FTP folder; `None` for the folder itself.
    pub home: Option<PathBuf>,
    /// What it may do with files.
    pub permissions: Permissions,
    /// Which SITE services it may call.
    pub services: ServiceGrant,
}

impl fmt::Debug for Account {
    /// Never shows the password hash.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Account")
            .field("name", &self.name)
            .field("home", &self.home)
            .field("permissions", &self.permissions)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

/// What anonymous sessions may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnonymousPolicy {
    /// Their home, relative to the FTP folder; `None` for the folder itself.
    pub home: Option<PathBuf>,
    /// What they may do with files (usually `list` and `download`).
    pub permissions: Permissions,
    /// Which SITE services they may call.
    pub services: ServiceGrant,
}

/// Why a set of accounts is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    /// A user name that cannot be used.
    #[error("user {0:?}: a name has 1 to 64 characters, none of them white space or control characters")]
    BadName(String),
    /// A name taken by anonymous logins or by the cluster's own servers.
    #[error("user {0:?}: this name is reserved (anonymous logins and the cluster's servers use it)")]
    Reserved(String),
    /// Two accounts with one name.
    #[error("user {0:?} is configured twice")]
    Duplicate(String),
    /// A password that is not an acceptable hash.
    #[error("user {name:?}: {problem}")]
    Password {
        /// The user.
        name: String,
        /// What is wrong with it.
        problem: password::PasswordError,
    },
    /// A home that is not a plain relative path inside the FTP folder.
    #[error("{owner}: home {home:?} must be a relative path inside the FTP folder, without ..")]
    Home {
        /// Whose home.
        owner: String,
        /// The home as configured.
        home: PathBuf,
    },
}

/// The accounts of a server.
#[derive(Clone, Debug)]
pub struct Accounts {
    users: HashMap<String, Account>,
    anonymous: Option<AnonymousPolicy>,
    /// Verified against when the user is unknown, so that an unknown user and a wrong password
    /// cost the same time.
    dummy: String,
}

impl Accounts {
    /// No accounts and no anonymous access: open mode.
    pub fn open() -> Self {
        Accounts { users: HashMap::new(), anonymous: None, dummy: String::new() }
    }

    /// Checks and builds the accounts.
    pub fn new(users: Vec<Account>, anonymous: Option<AnonymousPolicy>) -> Result<Self, AccountsError> {
        let mut table = HashMap::new();
        for account in users {
            let name = account.name.clone();
            if name.is_empty() || name.chars().count() > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(AccountsError::BadName(name));
            }
            if ANONYMOUS_NAMES.contains(&name.as_str()) || name == crate::protocol::CLUSTER_USER {
                return Err(AccountsError::Reserved(name));
            }
            password::check(&account.password)
                .map_err(|problem| AccountsError::Password { name: name.clone(), problem })?;
            check_home(&format!("user {name:?}"), account.home.as_deref())?;
            if table.insert(name.clone(), account).is_some() {
                return Err(AccountsError::Duplicate(name));
            }
        }
        if let Some(policy) = &anonymous {
            check_home("[anonymous]", policy.home.as_deref())?;
        }
        let dummy =
            if table.is_empty() { String::new() } else { password::hash("ftpcalc: no such user").unwrap_or_default() };
        Ok(Accounts { users: table, anonymous, dummy })
    }

    /// True in open mode: no account and no anonymous access configured.
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.anonymous.is_none()
    }

    /// The homes of every account and of anonymous sessions (to open at start-up).
    pub fn homes(&self) -> Vec<PathBuf> {
        let homes = self.users.values().filter_map(|account| account.home.clone());
        let mut homes: Vec<PathBuf> =
            homes.chain(self.anonymous.iter().filter_map(|policy| policy.home.clone())).collect();
        homes.sort();
        homes.dedup();
        homes
    }

    /// Checks a login (blocking: an Argon2id verification, also for unknown users). Open mode
    /// accepts anyone; the caller refuses open mode to clients that are not local.
    pub fn verify(&self, name: &str, password: &str) -> Option<User> {
        if self.is_open() {
            return Some(User::open(name));
        }
        if let (true, Some(policy)) = (ANONYMOUS_NAMES.contains(&name), &self.anonymous) {
            return Some(User {
                name: name.to_string(),
                kind: Kind::Anonymous,
                home: policy.home.clone(),
                permissions: policy.permissions,
                services: policy.services.clone(),
            });
        }
        match self.users.get(name) {
            Some(account) if password::verify(password, &account.password) => Some(User {
                name: account.name.clone(),
                kind: Kind::Account,
                home: account.home.clone(),
                permissions: account.permissions,
                services: account.services.clone(),
            }),
            Some(_) => None,
            None => {
                // The same work as for a real account, so timing does not tell which names exist.
                if !self.dummy.is_empty() {
                    let _ = password::verify(password, &self.dummy);
                }
                None
            }
        }
    }

    /// True when logging in as `name` costs a password verification (a configured account, or
    /// an unknown name while accounts exist).
    pub fn needs_verification(&self, name: &str) -> bool {
        let anonymous = ANONYMOUS_NAMES.contains(&name) && self.anonymous.is_some();
        !(self.is_open() || anonymous)
    }
}

fn check_home(owner: &str, home: Option<&Path>) -> Result<(), AccountsError> {
    let Some(home) = home else { return Ok(()) };
    let plain = home.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
    if !plain || home.as_os_str().is_empty() {
        return Err(AccountsError::Home { owner: owner.to_string(), home: home.to_path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, password: &str) -> Account {
        Account {
            name: name.into(),
            password: password::hash(password).expect("hash"),
            home: Some(PathBuf::from(name)),
            permissions: Permissions::all(),
            services: ServiceGrant::All,
        }
    }

    #[test]
    fn accounts_verify_passwords_and_anonymous_logins() {
        let anonymous = AnonymousPolicy {
            home: None,
            permissions: Permissions::parse(&["list".into(), "download".into()]).expect("valid"),
            services: ServiceGrant::All,
        };
        let accounts = Accounts::new(vec![account("alice", "wonderland")], Some(anonymous)).expect("valid");
        assert!(!accounts.is_open());
        let alice = accounts.verify("alice", "wonderland").expect("right password");
        assert_eq!((alice.kind, alice.home), (Kind::Account, Some(PathBuf::from("alice"))));
        assert!(accounts.verify("alice", "looking-glass").is_none());
        assert!(accounts.verify("bob", "wonderland").is_none());
        let anonymous = accounts.verify("ftp", "me@example.org").expect("anonymous");
        assert!(anonymous.may(Permission::Download) && !anonymous.may(Permission::Upload));
        assert!(!accounts.needs_verification("anonymous") && accounts.needs_verification("bob"));
        assert_eq!(accounts.homes(), [PathBuf::from("alice")]);
    }

    #[test]
    fn open_mode_lets_anyone_in() {
        let accounts = Accounts::open();
        assert!(accounts.is_open());
        assert_eq!(accounts.verify("CL1", "").map(|user| user.kind), Some(Kind::Open));
    }

    #[test]
    fn bad_accounts_are_refused_with_a_reason() {
        let mut bad_hash = account("carol", "x");
        bad_hash.password = "plain text".into();
        assert!(matches!(Accounts::new(vec![bad_hash], None), Err(AccountsError::Password { .. })));
        let mut escape = account("dave", "x");
        escape.home = Some(PathBuf::from("../etc"));
        assert!(matches!(Accounts::new(vec![escape], None), Err(AccountsError::Home { .. })));
        let mut absolute = account("erin", "x");
        absolute.home = Some(PathBuf::from("/srv"));
        assert!(matches!(Accounts::new(vec![absolute], None), Err(AccountsError::Home { .. })));
        let twice = vec![account("frank", "x"), account("frank", "y")];
        assert_eq!(Accounts::new(twice, None).map(|_| ()), Err(AccountsError::Duplicate("frank".into())));
        assert_eq!(
            Accounts::new(vec![account("ftp", "x")], None).map(|_| ()),
            Err(AccountsError::Reserved("ftp".into()))
        );
        assert!(matches!(Accounts::new(vec![account("a b", "x")], None), Err(AccountsError::BadName(_))));
        let debug = format!("{:?}", account("gina", "secret"));
        assert!(!debug.contains("argon2"), "the hash never shows: {debug}");
    }
}
