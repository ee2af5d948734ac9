//! The interactive shell: a `NAME> ` prompt with line editing, tab completion ([`completion`])
//! and a history kept across runs (`$XDG_STATE_HOME/ftpcalc/history`, else
//! `~/.local/state/ftpcalc/history`; mode 0600; the last 1,000 lines) on a terminal, plain
//! line-by-line reading from a pipe. One request per line; an error is printed and the shell
//! goes on.
//!
//! [`completion`]: crate::client::completion

use std::cell::RefCell;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::rc::Rc;

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};

use crate::client::command::{parse, split};
use crate::client::completion::ShellHelper;
use crate::client::error::EXIT_OK;
use crate::client::{ClientConfig, Connection};

/// Lines the history keeps.
pub const HISTORY_LINES: usize = 1000;

/// Where the history is kept.
pub fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
    Some(base.join("ftpcalc").join("history"))
}

/// Runs the shell until `quit` or end of input. Returns 0 when every line succeeded, else the
/// exit code of the last line that failed.
pub fn run(config: ClientConfig) -> u8 {
    let prompt = format!("{}> ", config.name);
    let connection = Rc::new(RefCell::new(Connection::new(config)));
    let status = {
        let mut status = EXIT_OK;
        let handling = connection.clone();
        let mut handle = |line: &str| -> bool {
            let words = match split(line) {
                Ok(words) if words.is_empty() => return true,
                Ok(words) => words,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    status = error.exit_code();
                    return true;
                }
            };
            let outcome = parse(&words).and_then(|request| handling.borrow_mut().run(&request));
            match outcome {
                Ok(go_on) => go_on,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    status = error.exit_code();
                    true
                }
            }
        };
        if std::io::stdin().is_terminal() {
            interactive(&prompt, connection.clone(), &mut handle);
        } else {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) if handle(&line) => {}
                    Ok(_) => break,
                    Err(error) => {
                        eprintln!("error: cannot read input: {error}");
                        break;
                    }
                }
            }
        }
        status
    };
    if let Ok(connection) = Rc::try_unwrap(connection) {
        connection.into_inner().close();
    }
    status
}

fn interactive(prompt: &str, connection: Rc<RefCell<Connection>>, handle: &mut dyn FnMut(&str) -> bool) {
    let config =
        Config::builder().max_history_size(HISTORY_LINES).map(|builder| builder.auto_add_history(false).build());
    let editor = config.and_then(Editor::<ShellHelper, DefaultHistory>::with_config);
    let mut editor = match editor {
        Ok(editor) => editor,
        Err(error) => {
            eprintln!("error: no line editing ({error}); reading plain lines");
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if !handle(&line) {
                    return;
                }
            }
            return;
        }
    };
    editor.set_helper(Some(ShellHelper::new(connection)));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    loop {
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    save_history(&mut editor, history.as_ref());
                }
                if !handle(&line) {
                    return;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return,
            Err(error) => {
                eprintln!("error: {error}");
                return;
            }
        }
    }
}

/// Saves the history after every line (a shell killed later keeps what was typed), in a file
/// only its owner can read.
fn save_history(editor: &mut Editor<ShellHelper, DefaultHistory>, path: Option<&PathBuf>) {
    let Some(path) = path else { return };
    if let Some(folder) = path.parent() {
        let _ = std::fs::create_dir_all(folder);
    }
    if editor.save_history(path).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}
