//! The shipped arithmetic services, `ADD`, `SUB`, `MUL` and `INC`, on integers of any size
//! (`num_bigint::BigInt`), with bounds that keep every request cheap.

use async_trait::async_trait;
use num_bigint::BigInt;

use super::{excerpt, Service, ServiceError, ADD, INC, MAX_ARGUMENT_BYTES, MUL, SUB};

/// Most decimal digits one operand may have (a sign does not count).
///
/// The bound keeps every arithmetic request cheap: 64 operands of 1,000 digits multiply in well
/// under a millisecond, and a reply stays far below any client's line limit.
pub const MAX_OPERAND_DIGITS: usize = 1000;
/// Most operands one arithmetic request may have.
pub const MAX_OPERANDS: usize = 64;

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
        // Most operands fit a machine word; num-bigint's general parser costs several times more.
        if digits.len() <= 18 {
            if let Ok(small) = word.parse::<i64>() {
                return Ok(BigInt::from(small));
            }
        }
        word.parse::<BigInt>()
            .map_err(|_| ServiceError::usage(self, format!("operand {position} ({}) is not an integer", excerpt(word))))
    }

    /// The answer in machine integers, when the request is valid, every operand fits an `i64`
    /// and nothing overflows an `i128` (the usual request: no big integer is allocated); `None`
    /// otherwise, and [`Arithmetic::operands`] and [`Arithmetic::compute`] give the answer or
    /// the refusal. Agrees with them (property-tested).
    fn small_answer<'a>(&self, words: impl Iterator<Item = &'a str> + Clone) -> Option<i128> {
        let (min, max) = self.operand_bounds();
        let count = words.clone().count();
        if count < min || count > max {
            return None;
        }
        let mut values = words.map(small_operand);
        let first = i128::from(values.next()??);
        match self.operation {
            Operation::Inc => first.checked_add(1),
            Operation::Add => values.try_fold(first, |sum, value| sum.checked_add(i128::from(value?))),
            Operation::Sub => values.try_fold(first, |difference, value| difference.checked_sub(i128::from(value?))),
            Operation::Mul => values.try_fold(first, |product, value| product.checked_mul(i128::from(value?))),
        }
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
        // Operands that fit a machine word are written back without a big integer.
        let (min, max) = self.operand_bounds();
        if arguments.len() <= MAX_ARGUMENT_BYTES && (min..=max).contains(&arguments.split_whitespace().count()) {
            let small: Option<Vec<String>> =
                arguments.split_whitespace().map(|word| small_operand(word).map(|value| value.to_string())).collect();
            if let Some(words) = small {
                return Ok(words);
            }
        }
        Ok(self.operands(arguments)?.iter().map(decimal).collect())
    }

    async fn call(&self, words: &[String]) -> Result<String, ServiceError> {
        if let Some(answer) = self.small_answer(words.iter().map(String::as_str)) {
            return Ok(answer.to_string());
        }
        let operands = self.operands(&words.join(" "))?;
        Ok(decimal(&self.compute(&operands)))
    }

    /// Arithmetic changes nothing: computing twice gives the same answer.
    fn idempotent(&self) -> bool {
        true
    }

    /// Arithmetic is a computation of bounded size (operands are bounded): it can queue.
    fn quick(&self) -> bool {
        true
    }
}

/// `word` as an `i64` when it is an operand of at most 18 digits (with an optional sign), which
/// always fits; `None` for anything else (longer operands, or what is not an operand at all).
fn small_operand(word: &str) -> Option<i64> {
    let digits = word.strip_prefix(['+', '-']).unwrap_or(word);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

/// `number` in decimal (through a machine word when it fits one: num-bigint's general
/// formatter costs several times more).
fn decimal(number: &BigInt) -> String {
    match i64::try_from(number) {
        Ok(small) => small.to_string(),
        Err(_) => number.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::future::Future;

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

    /// Checks that the machine-integer paths of `parse` and `call` answer (or refuse) exactly
    /// as the big-integer path does; true when the machine-integer path gave the answer.
    fn agreement(service: &Arithmetic, arguments: &str) -> Result<bool, String> {
        let general = service.operands(arguments).map(|operands| decimal(&service.compute(&operands)));
        let small = service.small_answer(arguments.split_whitespace());
        if let Some(small) = small {
            if Ok(small.to_string()) != general {
                return Err(format!("{arguments:?}: fast {small}, general {general:?}"));
            }
        }
        let words: Vec<String> = arguments.split_whitespace().map(str::to_string).collect();
        // `call` never waits: one poll answers it.
        let mut call = std::pin::pin!(service.call(&words));
        let std::task::Poll::Ready(called) =
            call.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        else {
            return Err("the call waited".to_string());
        };
        if called != general {
            return Err(format!("{arguments:?}: call {called:?}, general {general:?}"));
        }
        let parsed = service.parse(arguments);
        let expected = service.operands(arguments).map(|operands| operands.iter().map(decimal).collect::<Vec<_>>());
        if parsed != expected {
            return Err(format!("{arguments:?}: parse {parsed:?}, general {expected:?}"));
        }
        Ok(small.is_some())
    }

    #[test]
    fn the_machine_integer_path_agrees_at_its_edges() {
        let max = i64::MAX.to_string();
        let nines = "9".repeat(18);
        let cases = [
            "2 3".to_string(),
            "+0 -0 007".to_string(),
            format!("{nines} {nines}"),
            format!("-{nines} {nines} -{nines}"),
            format!("{max} 1"),
            "1".to_string(),
            "-1".to_string(),
            "1 2 x".to_string(),
            vec![nines.as_str(); 64].join(" "),
            vec![nines.as_str(); 65].join(" "),
            vec!["-3"; 64].join(" "),
            vec!["7"; 65].join("\t"),
        ];
        let mut fast = 0;
        for operation in [Operation::Add, Operation::Sub, Operation::Mul, Operation::Inc] {
            for arguments in &cases {
                let agreed = agreement(&Arithmetic::new(operation), arguments);
                assert!(agreed.is_ok(), "{operation:?}: {agreed:?}");
                fast += usize::from(agreed == Ok(true));
            }
        }
        assert!(fast > 0, "the fast path answered some");
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

    proptest! {
        #[test]
        fn any_arguments_parse_or_are_refused_without_panic(arguments in "\\PC{0,300}") {
            for operation in [Operation::Add, Operation::Sub, Operation::Mul, Operation::Inc] {
                let _ = Arithmetic::new(operation).parse(&arguments);
            }
        }

        #[test]
        fn the_machine_word_shortcuts_agree_with_num_bigint(word in "[+-]?[0-9]{1,20}") {
            let general: BigInt = word.parse().expect("integer");
            let service = Arithmetic::new(Operation::Inc);
            prop_assert_eq!(service.operands(&word).expect("operand"), vec![general.clone()]);
            prop_assert_eq!(decimal(&general), general.to_string());
            prop_assert_eq!(decimal(&(general.clone() * 1_000_000_000_000i64)), (general * 1_000_000_000_000i64).to_string());
        }

        #[test]
        fn the_machine_integer_answers_agree_with_num_bigint(
            // Mostly short requests of operands that take the machine-integer path (up to 18
            // digits), some with operands near or past an i64, some with a word that is not
            // an operand; and requests around the 64-operand bound.
            operands in prop_oneof![
                4 => proptest::collection::vec(prop_oneof![8 => "[+-]?[0-9]{1,18}", 2 => "[+-]?9{17,19}", 1 => "x|"], 0..6),
                1 => proptest::collection::vec("[+-]?[0-9]{1,18}", 62..67),
            ],
            operation in 0..4usize,
        ) {
            let operation = [Operation::Add, Operation::Sub, Operation::Mul, Operation::Inc][operation];
            let service = Arithmetic::new(operation);
            let arguments = operands.join(" ");
            let agreed = agreement(&service, &arguments);
            prop_assert!(agreed.is_ok(), "{:?}", agreed);
        }

        #[test]
        fn canonical_words_parse_to_themselves(operands in proptest::collection::vec("[+-]?[0-9]{1,60}", 2..10)) {
            let service = Arithmetic::new(Operation::Add);
            let words = service.parse(&operands.join(" \t ")).expect("valid operands");
            prop_assert_eq!(service.parse(&words.join(" ")).expect("canonical"), words.clone());
            let expected: BigInt = operands.iter().map(|operand| operand.parse::<BigInt>().expect("integer")).sum();
            prop_assert_eq!(service.compute(&service.operands(&words.join(" ")).expect("operands")), expected);
        }
    }
}
