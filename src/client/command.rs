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
    /// `get [-c] [-f] FILE`.
    Get {
        /// The remote file.
        remote: String,
        /// `-c`: continue an interrupted download.
        resume: bool,
        /// `-f`: replace a local file of the same name.
        force: bool,
    },
    /// `put [-c] FILE`.
    Put {
        /// The local file.
        local: String,
        /// `-c`: continue an interrupted upload.
        resume: bool,
    },
    /// `mget PATTERN...`: every remote file matching a pattern.
    Mget(Vec<String>),
    /// `mput PATTERN...`: every local file matching a pattern.
    Mput(Vec<String>),
    /// `cd PATH`.
    Cd(String),
    /// `pwd`.
    Pwd,
    /// `mkdir PATH`.
    Mkdir(String),
    /// `rm FILE`.
    Rm(String),
    /// `rmdir PATH`.
    Rmdir(String),
    /// `mv FROM TO`.
    Mv(String, String),
    /// `lcd PATH`: the local folder.
    Lcd(String),
    /// `stats [FILE]`.
    Stats(Option<String>),
    /// `info`.
    Info,
    /// `help [COMMAND]`.
    Help(Option<String>),
    /// `quit`.
    Quit,
}

impl Request {
    /// True when it may change the names in a remote folder (the completion listing is then
    /// asked again).
    pub fn changes_remote_names(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::Mput(_)
                | Request::Mkdir(_)
                | Request::Rm(_)
                | Request::Rmdir(_)
                | Request::Mv(..)
                | Request::Cd(_)
        )
    }

    /// True when running it twice does what running it once does, so that it may be sent
    /// again after the connection broke under it (the arithmetic services are pure).
    pub fn idempotent(&self) -> bool {
        match self {
            Request::Service { verb, .. } => ["ADD", "SUB", "MUL", "INC"].contains(&verb.as_str()),
            Request::Put { .. } | Request::Mput(_) | Request::Mkdir(_) | Request::Rm(_) | Request::Rmdir(_) => false,
            Request::Mv(..) | Request::Quit => false,
            _ => true,
        }
    }
}

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
        "get" => {
            let (flags, names) = flags(rest, &["-c", "-f"])?;
            match names.as_slice() {
                [remote] => Ok(Request::Get {
                    remote: remote.clone(),
                    resume: flags.contains(&"-c"),
                    force: flags.contains(&"-f"),
                }),
                _ => Err(usage("get takes one file name (and -c, -f)")),
            }
        }
        "put" => {
            let (flags, names) = flags(rest, &["-c"])?;
            match names.as_slice() {
                [local] => Ok(Request::Put { local: local.clone(), resume: flags.contains(&"-c") }),
                _ => Err(usage("put takes one file name (and -c)")),
            }
        }
        "mget" if rest.is_empty() => Err(usage("mget takes one or more patterns")),
        "mget" => Ok(Request::Mget(rest.to_vec())),
        "mput" if rest.is_empty() => Err(usage("mput takes one or more patterns")),
        "mput" => Ok(Request::Mput(rest.to_vec())),
        "cd" => Ok(Request::Cd(one("one path")?)),
        "pwd" => none(Request::Pwd),
        "mkdir" => Ok(Request::Mkdir(one("one path")?)),
        "rm" | "delete" => Ok(Request::Rm(one("one file name")?)),
        "rmdir" => Ok(Request::Rmdir(one("one path")?)),
        "mv" | "rename" => match rest {
            [from, to] => Ok(Request::Mv(from.clone(), to.clone())),
            _ => Err(usage("mv takes two paths")),
        },
        "lcd" => Ok(Request::Lcd(one("one local path")?)),
        "stats" => Ok(Request::Stats(optional("one file name")?)),
        "info" => none(Request::Info),
        "help" | "?" => Ok(Request::Help(optional("one command name")?)),
        "quit" | "exit" | "bye" => none(Request::Quit),
        "site" => match rest.split_first() {
            Some((verb, arguments)) => service(verb, arguments),
            None => Err(usage("site takes a SITE verb")),
        },
        _ => service(first, rest),
    }
}

/// Splits `words` into the flags among `known` (leading `-x` words) and the rest; an unknown
/// flag is a usage error. `--` ends the flags (for names that start with `-`).
fn flags<'a>(words: &'a [String], known: &[&'static str]) -> Result<(Vec<&'static str>, Vec<String>), ClientError> {
    let mut found = Vec::new();
    let mut rest: &'a [String] = words;
    while let Some((first, tail)) = rest.split_first() {
        if first == "--" {
            rest = tail;
            break;
        }
        if !first.starts_with('-') || first.len() < 2 {
            break;
        }
        match known.iter().find(|flag| **flag == first.as_str()) {
            Some(flag) => found.push(*flag),
            None => return Err(usage(&format!("unknown option {first} (known: {})", known.join(" ")))),
        }
        rest = tail;
    }
    Ok((found, rest.to_vec()))
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
        check("get \"a b.txt\"", Request::Get { remote: "a b.txt".into(), resume: false, force: false });
        check("get -c -f big.iso", Request::Get { remote: "big.iso".into(), resume: true, force: true });
        check("get -- -c", Request::Get { remote: "-c".into(), resume: false, force: false });
        check("put -c x", Request::Put { local: "x".into(), resume: true });
        check("mget *.txt a?", Request::Mget(vec!["*.txt".into(), "a?".into()]));
        check("mv a b", Request::Mv("a".into(), "b".into()));
        check("cd ..", Request::Cd("..".into()));
        check("help get", Request::Help(Some("get".into())));
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
        refused("get -x a", "unknown option -x");
        refused("put -f a", "unknown option -f");
        refused("mget", "one or more patterns");
        refused("mv a", "two paths");
        refused("pwd x", "no arguments");
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
