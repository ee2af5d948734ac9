//! The interactive shell: a `NAME> ` prompt with line editing and history on a terminal, plain
//! line-by-line reading from a pipe. One request per line; an error is printed and the shell
//! goes on.

use std::io::{BufRead, IsTerminal};

use rustyline::error::ReadlineError;

use crate::client::command::{parse, split};
use crate::client::error::EXIT_OK;
use crate::client::{ClientConfig, Connection};

/// Runs the shell until `quit` or end of input. Returns 0 when every line succeeded, else the
/// exit code of the last line that failed.
pub fn run(config: ClientConfig) -> u8 {
    let prompt = format!("{}> ", config.name);
    let mut connection = Connection::new(config);
    let mut status = EXIT_OK;
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
        match parse(&words).and_then(|request| connection.run(&request)) {
            Ok(go_on) => go_on,
            Err(error) => {
                eprintln!("error: {error:#}");
                status = error.exit_code();
                true
            }
        }
    };
    if std::io::stdin().is_terminal() {
        interactive(&prompt, &mut handle);
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
    connection.close();
    status
}

fn interactive(prompt: &str, handle: &mut dyn FnMut(&str) -> bool) {
    let mut editor = match rustyline::DefaultEditor::new() {
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
    loop {
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
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
