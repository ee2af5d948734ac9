//! The client's help: every command with its form, what it does and an example
//! ([`COMMANDS`], also the list tab completion offers), and the texts `help` and
//! `help COMMAND` print. Pure, no I/O.

/// One command's help: its form, what it does, an example.
pub struct CommandHelp {
    /// The command's name.
    pub name: &'static str,
    /// Its arguments.
    pub form: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// More, for `help COMMAND`.
    pub details: &'static str,
    /// An example line.
    pub example: &'static str,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "add",
        form: "A B [C ...]",
        summary: "sum of integers (any size)",
        details: "",
        example: "add 2 3",
    },
    CommandHelp { name: "sub", form: "A B [C ...]", summary: "A minus the others", details: "", example: "sub 10 3 2" },
    CommandHelp {
        name: "mul",
        form: "A B [C ...]",
        summary: "product",
        details: "",
        example: "mul 99999999999 99999999999",
    },
    CommandHelp { name: "inc", form: "A", summary: "A plus one", details: "", example: "inc -1" },
    CommandHelp {
        name: "lookup",
        form: "SERVICE",
        summary: "which servers offer SERVICE",
        details: "",
        example: "lookup add",
    },
    CommandHelp { name: "servers", form: "", summary: "every server of the cluster", details: "", example: "servers" },
    CommandHelp { name: "ls", form: "[PATH]", summary: "list a remote folder", details: "", example: "ls docs" },
    CommandHelp { name: "cd", form: "PATH", summary: "change the remote folder", details: "", example: "cd docs" },
    CommandHelp { name: "pwd", form: "", summary: "print the remote folder", details: "", example: "pwd" },
    CommandHelp {
        name: "get",
        form: "[-c] [-f] FILE",
        summary: "download FILE into the local folder",
        details: "Never replaces a local file: if NAME.EXT exists the copy is NAME_copy1.EXT, ... (-f replaces it).\n\
                  -c continues a download that was cut off, from the bytes already here.\n\
                  Downloads are cached: a second get asks the server for MDTM and SIZE and, if the file is\n\
                  unchanged, copies it from the cache without a data connection (says \"cached\").",
        example: "get -c big.iso",
    },
    CommandHelp {
        name: "put",
        form: "[-c] FILE",
        summary: "upload FILE (never overwrites: NAME_copy1.EXT, ...)",
        details: "-c continues an upload that was cut off: the bytes past the remote file's size are appended.",
        example: "put report.pdf",
    },
    CommandHelp {
        name: "mget",
        form: "PATTERN ...",
        summary: "download every remote file matching a pattern",
        details: "Patterns use * ? and [...] on the names of the current remote folder (or PATTERN's folder).",
        example: "mget *.txt",
    },
    CommandHelp {
        name: "mput",
        form: "PATTERN ...",
        summary: "upload every local file matching a pattern",
        details: "Patterns are matched in the local folder (see lcd).",
        example: "mput *.csv",
    },
    CommandHelp { name: "mkdir", form: "PATH", summary: "make a remote folder", details: "", example: "mkdir reports" },
    CommandHelp { name: "rm", form: "FILE", summary: "delete a remote file", details: "", example: "rm old.txt" },
    CommandHelp {
        name: "rmdir",
        form: "PATH",
        summary: "delete an empty remote folder",
        details: "",
        example: "rmdir reports",
    },
    CommandHelp {
        name: "mv",
        form: "FROM TO",
        summary: "rename a remote file or folder",
        details: "",
        example: "mv a.txt b.txt",
    },
    CommandHelp { name: "lcd", form: "PATH", summary: "change the local folder", details: "", example: "lcd /tmp" },
    CommandHelp { name: "stats", form: "[FILE]", summary: "download counts", details: "", example: "stats" },
    CommandHelp {
        name: "info",
        form: "",
        summary: "the server's name, role, pid, version and services",
        details: "",
        example: "info",
    },
    CommandHelp {
        name: "site",
        form: "VERB [ARG ...]",
        summary: "any SITE command; VERB [ARG ...] works too for services the server knows",
        details: "",
        example: "site lookup mul",
    },
    CommandHelp {
        name: "help",
        form: "[COMMAND]",
        summary: "this text, or one command's",
        details: "",
        example: "help get",
    },
    CommandHelp { name: "quit", form: "", summary: "leave the shell", details: "", example: "quit" },
];

/// The text `help` prints: every command on one line.
pub fn help_text() -> String {
    let mut text = String::from("commands:\n");
    for command in COMMANDS {
        let usage = format!("{} {}", command.name, command.form);
        text.push_str(&format!("  {:<20} {}\n", usage.trim_end(), command.summary));
    }
    text.push_str("  (help COMMAND explains one, with an example)");
    text
}

/// The text `help COMMAND` prints, if there is such a command.
pub fn command_help(name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    let command = COMMANDS.iter().find(|command| command.name == name)?;
    let mut text = format!("usage: {} {}\n{}\n", command.name, command.form, command.summary);
    if !command.details.is_empty() {
        text.push_str(command.details);
        text.push('\n');
    }
    text.push_str(&format!("example: {}", command.example));
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::command::{parse, split};

    #[test]
    fn every_command_has_help_with_an_example() {
        for command in COMMANDS {
            let text = command_help(command.name).expect("help");
            assert!(text.contains(&format!("example: {}", command.example)), "{text}");
            assert!(help_text().contains(command.summary));
            if command.name != "site" && command.name != "help" {
                let words = split(command.example).expect("splits");
                assert!(parse(&words).is_ok(), "the example of {} parses", command.name);
            }
        }
        assert!(command_help("frobnicate").is_none());
    }
}
