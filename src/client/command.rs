//! Client commands: [`Request`], and [`split`] and [`parse`], which turn a shell line or the
//! command-line words into one. Pure, no I/O.

use crate::client::error::ClientError;

/// One thing the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A service: `add`, `sub`, `mul`, `inc`, an embedder's verb by name, or `site VERB ...`.
    Service {
        /// The SITE verb, upper case.
        verb: String,
        /// Its arguments.
        arguments: Vec<String>,
    },
    /// `lookup SERVICE`.
    Lookup(String),
    /// `servers`.
    Servers,
    /// `ls [PATH]`.
    List(Option<String>),
    /// `get FILE`.
    Get(String),
    /// `put FILE`.
    Put(String),
    /// `stats [FILE]`.
    Stats(Option<String>),
    /// `info`.
    Info,
    /// `help`.
    Help,
    /// `quit`.
    Quit,
}

/// The text `help` prints.
pub const HELP: &str = "\
commands:
  add A B [C ...]     sum of integers (any size)
  sub A B [C ...]     A minus the others
  mul A B [C ...]     product
  inc A               A plus one
  lookup SERVICE      which servers offer SERVICE
  servers             every server of the cluster
  ls [PATH]           list a remote folder
  get FILE            download FILE into the local folder
  put FILE            upload FILE (never overwrites: NAME_copy1.EXT, ...)
  stats [FILE]        download counts
  info                the server's name, role, pid, version and services
  site VERB [ARG ...] any SITE command; VERB [ARG ...] works too for services the server knows
  help                this text
  quit                leave the shell";

/// Splits a line into words: white space separates, double quotes group (`get "a b.txt"`).
pub fn split(line: &str) -> Result<Vec<String>, ClientError> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut quoted = false;
    for character in line.chars() {
        match character {
            '"' => {
                quoted = !quoted;
                current.get_or_insert_with(String::new);
            }
            character if character.is_whitespace() && !quoted => {
                if let Some(word) = current.take() {
                    words.push(word);
                }
            }
            character => current.get_or_insert_with(String::new).push(character),
        }
    }
    if quoted {
        return Err(ClientError::Usage("unbalanced double quote".into()));
    }
    words.extend(current);
    Ok(words)
}

fn usage(message: &str) -> ClientError {
    ClientError::Usage(format!("{message} (try: help)"))
}

/// Turns words (`["add", "2", "3"]`) into a request, checking the number of arguments.
pub fn parse(words: &[String]) -> Result<Request, ClientError> {
    let Some((first, rest)) = words.split_first() else {
        return Err(usage("no command"));
    };
    let name = first.to_ascii_lowercase();
    let one = |what: &str| match rest {
        [only] => Ok(only.clone()),
        _ => Err(usage(&format!("{name} takes {what}"))),
    };
    let optional = |what: &str| match rest {
        [] => Ok(None),
        [only] => Ok(Some(only.clone())),
        _ => Err(usage(&format!("{name} takes at most {what}"))),
    };
    let none = |request: Request| {
        if rest.is_empty() {
            Ok(request)
        } else {
            Err(usage(&format!("{name} takes no arguments")))
        }
    };
    match name.as_str() {
        "add" | "sub" | "mul" if rest.len() < 2 => Err(usage(&format!("{name} takes two or more integers"))),
        "inc" if rest.len() != 1 => Err(usage("inc takes one integer")),
        "lookup" => Ok(Request::Lookup(one("one service name")?)),
        "servers" => none(Request::Servers),
        "ls" | "dir" => Ok(Request::List(optional("one path")?)),
        "get" => Ok(Request::Get(one("one file name")?)),
        "put" => Ok(Request::Put(one("one file name")?)),
        "stats" => Ok(Request::Stats(optional("one file name")?)),
        "info" => none(Request::Info),
        "help" | "?" => Ok(Request::Help),
        "quit" | "exit" | "bye" => none(Request::Quit),
        "site" => match rest.split_first() {
            Some((verb, arguments)) => service(verb, arguments),
            None => Err(usage("site takes a SITE verb")),
        },
        _ => service(first, rest),
    }
}

fn service(verb: &str, arguments: &[String]) -> Result<Request, ClientError> {
    if !crate::services::is_valid_name(verb) {
        return Err(usage(&format!("unknown command {verb:?}")));
    }
    Ok(Request::Service { verb: verb.to_ascii_uppercase(), arguments: arguments.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line).expect("splits")
    }

    #[track_caller]
    fn check(line: &str, expected: Request) {
        assert_eq!(parse(&words(line)).expect("parses"), expected);
    }

    #[track_caller]
    fn refused(line: &str, message: &str) {
        match parse(&words(line)) {
            Err(ClientError::Usage(text)) => assert!(text.contains(message), "{text:?} lacks {message:?}"),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn service(verb: &str, arguments: &[&str]) -> Request {
        Request::Service { verb: verb.into(), arguments: arguments.iter().map(|word| word.to_string()).collect() }
    }

    #[test]
    fn lines_split_on_white_space_and_quotes_group() {
        assert_eq!(words("  get   \"my file.txt\" "), ["get", "my file.txt"]);
        assert_eq!(words("add 1\t2"), ["add", "1", "2"]);
        assert_eq!(words("put \"\""), ["put", ""]);
        assert!(split("get \"open").is_err());
    }

    #[test]
    fn commands_parse() {
        check("add 2 3", service("ADD", &["2", "3"]));
        check("MUL 2 3 4", service("MUL", &["2", "3", "4"]));
        check("inc -5", service("INC", &["-5"]));
        check("reverse a b", service("REVERSE", &["a", "b"]));
        check("site clock", service("CLOCK", &[]));
        check("lookup add", Request::Lookup("add".into()));
        check("ls", Request::List(None));
        check("ls sub", Request::List(Some("sub".into())));
        check("get \"a b.txt\"", Request::Get("a b.txt".into()));
        check("stats", Request::Stats(None));
        check("quit", Request::Quit);
    }

    #[test]
    fn bad_commands_are_usage_errors() {
        refused("", "no command");
        refused("add 2", "two or more");
        refused("inc", "one integer");
        refused("inc 1 2", "one integer");
        refused("lookup", "one service name");
        refused("get", "one file name");
        refused("get a b", "one file name");
        refused("servers now", "no arguments");
        refused("what?!", "unknown command");
        refused("site", "SITE verb");
    }

    proptest::proptest! {
        #[test]
        fn any_line_splits_and_parses_or_is_refused_without_panic(line in "\\PC{0,120}") {
            if let Ok(words) = split(&line) {
                let _ = parse(&words);
            }
        }

        #[test]
        fn quoted_words_split_back(words in proptest::collection::vec("[^\"]{0,12}", 1..6)) {
            let line: Vec<String> = words.iter().map(|word| format!("\"{word}\"")).collect();
            proptest::prop_assert_eq!(split(&line.join(" ")).expect("balanced"), words);
        }
    }
}
