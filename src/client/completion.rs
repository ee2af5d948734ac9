//! Tab completion in the shell: command names for the first word, then remote names (from a
//! listing of the current remote folder, asked at most every 10 s) for commands that take a
//! remote path, local names for those that take a local one. Names with spaces are completed
//! in double quotes.

use std::cell::RefCell;
use std::rc::Rc;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::client::help::COMMANDS;
use crate::client::Connection;

/// Commands whose arguments are remote names.
const REMOTE: &[&str] = &["get", "ls", "dir", "cd", "rm", "delete", "rmdir", "mv", "rename", "mget", "stats"];
/// Commands whose arguments are local names.
const LOCAL: &[&str] = &["put", "mput", "lcd"];

/// The shell's rustyline helper.
pub struct ShellHelper {
    connection: Rc<RefCell<Connection>>,
}

impl ShellHelper {
    /// Completes with what `connection` lists.
    pub fn new(connection: Rc<RefCell<Connection>>) -> Self {
        ShellHelper { connection }
    }

    fn candidates(&self, command: Option<&str>) -> Vec<String> {
        match command {
            None => COMMANDS.iter().map(|command| command.name.to_string()).collect(),
            Some(command) if REMOTE.contains(&command) => match self.connection.try_borrow_mut() {
                Ok(mut connection) => connection.remote_names(),
                Err(_) => Vec::new(),
            },
            Some(command) if LOCAL.contains(&command) => {
                let folder = match self.connection.try_borrow() {
                    Ok(connection) => connection.folder().to_path_buf(),
                    Err(_) => return Vec::new(),
                };
                std::fs::read_dir(folder)
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .map(|entry| entry.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Some(_) => Vec::new(),
        }
    }
}

/// The completions of `word` among `names`, sorted, quoted when they hold white space.
pub fn complete_word(word: &str, names: &[String]) -> Vec<Pair> {
    let bare = word.trim_start_matches('"');
    let mut matching: Vec<&String> = names.iter().filter(|name| name.starts_with(bare)).collect();
    matching.sort();
    matching.dedup();
    matching
        .into_iter()
        .map(|name| {
            let replacement = if name.chars().any(char::is_whitespace) || word.starts_with('"') {
                format!("\"{name}\"")
            } else {
                name.clone()
            };
            Pair { display: name.clone(), replacement }
        })
        .collect()
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _context: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |index| index + 1);
        let command = before[..start].split_whitespace().next().map(str::to_ascii_lowercase);
        let names = self.candidates(command.as_deref());
        Ok((start, complete_word(&before[start..], &names)))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_complete_among_names_and_spaces_are_quoted() {
        let names: Vec<String> = ["report.pdf", "readme.txt", "my file.txt", "other"].map(String::from).to_vec();
        let replacements = |word: &str| -> Vec<String> {
            complete_word(word, &names).into_iter().map(|pair| pair.replacement).collect()
        };
        assert_eq!(replacements("re"), ["readme.txt", "report.pdf"]);
        assert_eq!(replacements("my"), ["\"my file.txt\""]);
        assert_eq!(replacements("\"my"), ["\"my file.txt\""]);
        assert!(replacements("zzz").is_empty());
    }
}
