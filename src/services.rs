//! Services: the named computations a SITE command runs (`ADD`, `SUB`, `MUL`, `INC`, or an
//! embedder's own), behind the [`Service`] trait, and the [`ServiceSet`] catalogue of them.
//!
//! Services are pure as far as this crate is concerned: they parse an argument string into
//! canonical words and compute an answer from those words. The same code runs on a worker that
//! computes and on the main server that only validates before it routes.

pub mod arithmetic;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use arithmetic::{Arithmetic, Operation, MAX_OPERANDS, MAX_OPERAND_DIGITS};

/// Name of the addition service.
pub const ADD: &str = "ADD";
/// Name of the subtraction service.
pub const SUB: &str = "SUB";
/// Name of the multiplication service.
pub const MUL: &str = "MUL";
/// Name of the increment service.
pub const INC: &str = "INC";

/// Most bytes of argument text any service request may have; longer requests get `501` before
/// any parsing happens.
pub const MAX_ARGUMENT_BYTES: usize = 65_536;
/// Most characters of a single word in a request (for services other than arithmetic).
pub const MAX_WORD_CHARS: usize = 1024;

/// Why a service gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The arguments do not have the form the service needs: the client's fault, `501`.
    #[error("{message}; usage: {usage}")]
    Usage {
        /// What is wrong with the arguments.
        message: String,
        /// The service's usage line.
        usage: String,
    },
    /// The service cannot answer right now (a back end it needs is down, a limit is reached):
    /// the client may try again later, `451`. The text is shown to the client.
    #[error("{0}")]
    Transient(String),
}

impl ServiceError {
    /// Builds a usage error for `service` with a message saying what is wrong.
    pub fn usage(service: &dyn Service, message: impl Into<String>) -> Self {
        ServiceError::Usage { message: message.into(), usage: service.usage().to_string() }
    }
}

/// A named computation offered as `SITE <NAME> <ARGUMENTS>`.
///
/// `parse` turns the client's raw argument text into canonical words (it is pure and cheap, and
/// the main server calls it before routing, so that it forwards only the canonical words, never
/// the client's text); `call` computes the answer from those words on the server that offers the
/// service. The answer must be one line of printable text.
///
/// # Retries
///
/// When the worker a request was routed to fails, the main server sends the request to a
/// second worker only if it is safe:
///
/// - always when the first worker was never reached (the connection or the login failed, or
///   its connection pool stayed full), since the request was not sent;
/// - after the request was sent (the connection broke, or no answer came in time) only when
///   [`Service::idempotent`] says so, since the first worker may have carried it out. For such
///   services the main server may also *hedge*: when the first worker is slower than the
///   service usually is, the same request goes to a second worker and the first answer wins.
///
/// A request is sent to at most two workers, and never waits longer than the worker timeout.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// The SITE verb: ASCII letters, digits, `-` or `_`, upper case, at most 32 characters.
    fn name(&self) -> &str;
    /// A one-line usage text, e.g. `ADD A B [C ...]: sum of integers`.
    fn usage(&self) -> &str;
    /// Checks the raw argument text and returns the canonical words to compute on.
    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError>;
    /// Computes the answer from words that `parse` returned.
    async fn call(&self, words: &[String]) -> Result<String, ServiceError>;
    /// True when running the same request twice does no harm (it changes nothing, or changes
    /// it the same way): the main server may then retry or hedge it on a second worker. False
    /// by default.
    fn idempotent(&self) -> bool {
        false
    }
    /// True when a call is quick and waits on nothing outside itself (a computation): the main
    /// server may then send the request to a worker over a connection other requests share,
    /// queued behind theirs (pipelined), since a worker answers each connection's commands in
    /// turn. False by default: each request then has a worker connection to itself while it
    /// runs, so calls that wait (on a lock, a peer, the network) run side by side.
    fn quick(&self) -> bool {
        false
    }
}

/// Splits argument text into words for services that take free-form words: bounded in total
/// length and word length, printable characters only. Services of embedders can use it in
/// their `parse`.
pub fn plain_words(service: &dyn Service, arguments: &str) -> Result<Vec<String>, ServiceError> {
    if arguments.len() > MAX_ARGUMENT_BYTES {
        return Err(ServiceError::usage(service, format!("arguments longer than {MAX_ARGUMENT_BYTES} bytes")));
    }
    arguments
        .split_whitespace()
        .map(|word| {
            if word.chars().count() > MAX_WORD_CHARS {
                Err(ServiceError::usage(service, format!("a word is longer than {MAX_WORD_CHARS} characters")))
            } else if word.chars().any(char::is_control) {
                Err(ServiceError::usage(service, "control characters are not allowed"))
            } else {
                Ok(word.to_string())
            }
        })
        .collect()
}

/// At most 24 characters of `word`, for quoting client input back in a reply.
pub(crate) fn excerpt(word: &str) -> String {
    let mut short: String = word.chars().take(24).collect();
    if short.len() < word.len() {
        short.push_str("...");
    }
    short
}

/// True when `name` may be a service or server name: 1 to 32 ASCII letters, digits, `-`, `_`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A catalogue of services by name. Cloning shares the services.
#[derive(Clone, Default)]
pub struct ServiceSet {
    services: BTreeMap<String, Arc<dyn Service>>,
}

impl fmt::Debug for ServiceSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_set().entries(self.services.keys()).finish()
    }
}

impl ServiceSet {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The four shipped arithmetic services.
    pub fn arithmetic() -> Self {
        [Operation::Add, Operation::Sub, Operation::Mul, Operation::Inc]
            .into_iter()
            .fold(Self::new(), |set, operation| set.with(Arithmetic::new(operation)))
    }

    /// Adds `service`, replacing any service of the same name.
    pub fn with(mut self, service: impl Service) -> Self {
        self.insert(Arc::new(service));
        self
    }

    /// Adds a shared service, replacing any service of the same name.
    pub fn insert(&mut self, service: Arc<dyn Service>) {
        self.services.insert(service.name().to_ascii_uppercase(), service);
    }

    /// The service called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Service>> {
        self.services.get(&name.to_ascii_uppercase()).cloned()
    }

    /// The names of all services, sorted.
    pub fn names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// All services, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Service>> {
        self.services.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("SV0"));
        assert!(is_valid_name("my-worker_2"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(&"x".repeat(33)));
    }

    #[test]
    fn the_arithmetic_services_are_idempotent_and_others_are_not_by_default() {
        struct Plain;
        #[async_trait]
        impl Service for Plain {
            fn name(&self) -> &str {
                "PLAIN"
            }
            fn usage(&self) -> &str {
                "PLAIN"
            }
            fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
                plain_words(self, arguments)
            }
            async fn call(&self, words: &[String]) -> Result<String, ServiceError> {
                Ok(words.join(" "))
            }
        }
        assert!(ServiceSet::arithmetic().iter().all(|service| service.idempotent()));
        assert!(!Plain.idempotent());
        assert!(plain_words(&Plain, "a\u{7}b").is_err());
        assert_eq!(plain_words(&Plain, " a  b ").expect("words"), ["a", "b"]);
    }

    proptest! {
        #[test]
        fn plain_words_are_printable_and_never_panic(arguments in "\\PC{0,300}|[\\x00-\\x7f]{0,100}") {
            struct Words;
            #[async_trait]
            impl Service for Words {
                fn name(&self) -> &str { "WORDS" }
                fn usage(&self) -> &str { "WORDS" }
                fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> { plain_words(self, arguments) }
                async fn call(&self, words: &[String]) -> Result<String, ServiceError> { Ok(words.join(" ")) }
            }
            if let Ok(words) = plain_words(&Words, &arguments) {
                prop_assert!(words.iter().all(|word| !word.is_empty() && !word.chars().any(|c| c.is_control() || c.is_whitespace())));
                prop_assert_eq!(plain_words(&Words, &words.join(" ")).expect("again"), words);
            }
        }
    }
}
