//! Services: the named computations a SITE command runs (`ADD`, `SUB`, `MUL`, `INC`, or an
//! embedder's own), behind the [`Service`] trait, and the [`ServiceSet`] catalogue of them.
//!
//! Services are pure: they parse an argument string into canonical words and compute an answer
//! from those words. They never do network or file I/O, so the same code runs on a worker that
//! computes and on the main server that only validates before it routes.

use async_trait::async_trait;
use num_bigint::BigInt;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Name of the addition service.
pub const ADD: &str = "ADD";
/// Name of the subtraction service.
pub const SUB: &str = "SUB";
/// Name of the multiplication service.
pub const MUL: &str = "MUL";
/// Name of the increment service.
pub const INC: &str = "INC";

/// Most decimal digits one operand may have (a sign does not count).
///
/// The bound keeps every arithmetic request cheap: 64 operands of 1,000 digits multiply in well
/// under a millisecond, and a reply stays far below any client's line limit.
pub const MAX_OPERAND_DIGITS: usize = 1000;
/// Most operands one arithmetic request may have.
pub const MAX_OPERANDS: usize = 64;
/// Most bytes of argument text any service request may have; longer requests get `501` before
/// any parsing happens.
pub const MAX_ARGUMENT_BYTES: usize = 65_536;
/// Most characters of a single word in a request (for services other than arithmetic).
pub const MAX_WORD_CHARS: usize = 1024;

/// Why a service refused a request. Every variant is the client's fault and becomes `501`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The arguments do not have the form the service needs.
    #[error("{message}; usage: {usage}")]
    Usage {
        /// What is wrong with the arguments.
        message: String,
        /// The service's usage line.
        usage: String,
    },
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
}

/// The arithmetic operation of an [`Arithmetic`] service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Sum of two or more integers.
    Add,
    /// The first integer minus all the others.
    Sub,
    /// Product of two or more integers.
    Mul,
    /// One integer plus one.
    Inc,
}

/// One of the shipped arithmetic services, on integers of any size.
#[derive(Clone, Copy, Debug)]
pub struct Arithmetic {
    operation: Operation,
}

impl Arithmetic {
    /// The service for `operation`.
    pub fn new(operation: Operation) -> Self {
        Arithmetic { operation }
    }

    fn operand_bounds(&self) -> (usize, usize) {
        match self.operation {
            Operation::Inc => (1, 1),
            _ => (2, MAX_OPERANDS),
        }
    }

    /// Parses and checks the operands of a request.
    pub fn operands(&self, arguments: &str) -> Result<Vec<BigInt>, ServiceError> {
        if arguments.len() > MAX_ARGUMENT_BYTES {
            return Err(ServiceError::usage(self, format!("arguments longer than {MAX_ARGUMENT_BYTES} bytes")));
        }
        let words: Vec<&str> = arguments.split_whitespace().collect();
        let (min, max) = self.operand_bounds();
        if words.len() < min || words.len() > max {
            let wanted = if min == max { format!("exactly {min}") } else { format!("{min} to {max}") };
            return Err(ServiceError::usage(
                self,
                format!("{} takes {wanted} operands, got {}", self.name(), words.len()),
            ));
        }
        words.iter().enumerate().map(|(index, word)| self.operand(index + 1, word)).collect()
    }

    fn operand(&self, position: usize, word: &str) -> Result<BigInt, ServiceError> {
        let digits = word.strip_prefix(['+', '-']).unwrap_or(word);
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ServiceError::usage(self, format!("operand {position} ({}) is not an integer", excerpt(word))));
        }
        if digits.len() > MAX_OPERAND_DIGITS {
            return Err(ServiceError::usage(
                self,
                format!("operand {position} has {} digits, the limit is {MAX_OPERAND_DIGITS}", digits.len()),
            ));
        }
        word.parse::<BigInt>()
            .map_err(|_| ServiceError::usage(self, format!("operand {position} ({}) is not an integer", excerpt(word))))
    }

    /// Computes the answer for checked operands.
    pub fn compute(&self, operands: &[BigInt]) -> BigInt {
        let mut rest = operands.iter();
        let first = rest.next().cloned().unwrap_or_default();
        match self.operation {
            Operation::Add => rest.fold(first, |sum, operand| sum + operand),
            Operation::Sub => rest.fold(first, |difference, operand| difference - operand),
            Operation::Mul => rest.fold(first, |product, operand| product * operand),
            Operation::Inc => first + 1,
        }
    }
}

#[async_trait]
impl Service for Arithmetic {
    fn name(&self) -> &str {
        match self.operation {
            Operation::Add => ADD,
            Operation::Sub => SUB,
            Operation::Mul => MUL,
            Operation::Inc => INC,
        }
    }

    fn usage(&self) -> &str {
        match self.operation {
            Operation::Add => "ADD A B [C ...]: sum of integers",
            Operation::Sub => "SUB A B [C ...]: A minus the others",
            Operation::Mul => "MUL A B [C ...]: product of integers",
            Operation::Inc => "INC A: A plus one",
        }
    }

    fn parse(&self, arguments: &str) -> Result<Vec<String>, ServiceError> {
        Ok(self.operands(arguments)?.iter().map(BigInt::to_string).collect())
    }

    async fn call(&self, words: &[String]) -> Result<String, ServiceError> {
        let operands = self.operands(&words.join(" "))?;
        Ok(self.compute(&operands).to_string())
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
fn excerpt(word: &str) -> String {
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

    #[track_caller]
    fn check(operation: Operation, arguments: &str, expected: Result<&str, &str>) {
        let service = Arithmetic::new(operation);
        let answer = service.operands(arguments).map(|operands| service.compute(&operands).to_string());
        match (answer, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(ServiceError::Usage { message, .. }), Err(want)) => {
                assert!(message.contains(want), "{message:?} lacks {want:?}")
            }
            (got, want) => panic!("{arguments:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn arithmetic_answers() {
        check(Operation::Add, "2 3", Ok("5"));
        check(Operation::Add, "  2\t3  4 ", Ok("9"));
        check(Operation::Add, "-7 +2", Ok("-5"));
        check(Operation::Sub, "10 3 2", Ok("5"));
        check(
            Operation::Mul,
            "99999999999999999999 99999999999999999999",
            Ok("9999999999999999999800000000000000000001"),
        );
        check(Operation::Inc, "18446744073709551615", Ok("18446744073709551616"));
        check(Operation::Inc, "-1", Ok("0"));
    }

    #[test]
    fn arithmetic_refuses_bad_operands() {
        check(Operation::Add, "", Err("takes 2 to 64 operands, got 0"));
        check(Operation::Add, "2", Err("got 1"));
        check(Operation::Inc, "1 2", Err("exactly 1"));
        check(Operation::Add, "2 x", Err("operand 2 (x) is not an integer"));
        check(Operation::Add, "2 -", Err("operand 2 (-) is not an integer"));
        check(Operation::Add, "2 1.5", Err("not an integer"));
        check(Operation::Add, "2 ３", Err("not an integer"));
        check(Operation::Add, &format!("1 {}", "9".repeat(MAX_OPERAND_DIGITS + 1)), Err("has 1001 digits"));
        check(Operation::Add, &vec!["1"; MAX_OPERANDS + 1].join(" "), Err("got 65"));
        check(Operation::Add, &"1 ".repeat(MAX_ARGUMENT_BYTES), Err("longer than"));
    }

    #[test]
    fn largest_operands_are_accepted() {
        let big = "9".repeat(MAX_OPERAND_DIGITS);
        let service = Arithmetic::new(Operation::Mul);
        let words = service.parse(&vec![big.as_str(); MAX_OPERANDS].join(" ")).expect("within bounds");
        assert_eq!(words.len(), MAX_OPERANDS);
    }

    #[test]
    fn parse_returns_canonical_words() {
        let service = Arithmetic::new(Operation::Add);
        assert_eq!(service.parse("+007 -0").expect("valid"), vec!["7", "0"]);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("SV0"));
        assert!(is_valid_name("my-worker_2"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(&"x".repeat(33)));
    }
}
