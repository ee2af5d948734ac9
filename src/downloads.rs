//! Download counters: every completed RETR, counted per file since the server started, exactly,
//! under any concurrency; each one is also logged as `/<path>|<client ip>|<client port>|<count>`.
//!
//! One [`Downloads`] is shared by every server of a cluster started in one process, so counts
//! are per cluster process, whichever server delivered the file.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Component, Path};
use std::sync::Mutex;

type LogLine = Box<dyn Fn(&str) + Send + Sync>;

/// The download counters and where their log lines go.
pub struct Downloads {
    counts: Mutex<HashMap<String, u64>>,
    log: LogLine,
}

impl fmt::Debug for Downloads {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Downloads").field("files", &self.all().len()).finish()
    }
}

impl Default for Downloads {
    /// Counters that print their log lines on standard output, the server console.
    fn default() -> Self {
        // A closed stdout must not take the server down: write errors are ignored.
        Downloads::new(|line| {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        })
    }
}

impl Downloads {
    /// Counters that hand each log line to `log`.
    pub fn new(log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Downloads { counts: Mutex::default(), log: Box::new(log) }
    }

    /// Counts one completed download of `path` by the client whose control connection comes
    /// from `peer`, logs it, and returns the file's count including this download.
    pub fn record(&self, path: &Path, peer: SocketAddr) -> u64 {
        let path = normalize(path);
        let count = {
            let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = counts.entry(path.clone()).or_insert(0);
            *count += 1;
            *count
        };
        (self.log)(&format!("{path}|{}|{}|{count}", peer.ip(), peer.port()));
        count
    }

    /// How often `path` was downloaded.
    pub fn count(&self, path: &Path) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.get(&normalize(path)).copied().unwrap_or(0)
    }

    /// Every downloaded file with its count, sorted by path.
    pub fn all(&self) -> Vec<(String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all: Vec<(String, u64)> = counts.iter().map(|(path, count)| (path.clone(), *count)).collect();
        all.sort();
        all
    }
}

/// `path` as an absolute FTP path (`/a/b.txt`): `.` dropped, `..` applied, never above `/`.
pub fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalize(Path::new("/a/./b/../c.txt")), "/a/c.txt");
        assert_eq!(normalize(Path::new("c.txt")), "/c.txt");
        assert_eq!(normalize(Path::new("/../../etc")), "/etc");
        assert_eq!(normalize(Path::new("/")), "/");
    }

    #[test]
    fn records_count_and_log() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let downloads = Downloads::new(move |line| sink.lock().expect("lock").push(line.to_string()));
        let peer: SocketAddr = "127.0.0.1:40001".parse().expect("literal");
        assert_eq!(downloads.record(Path::new("/x/a.txt"), peer), 1);
        assert_eq!(downloads.record(Path::new("x/./a.txt"), peer), 2);
        assert_eq!(downloads.count(Path::new("/x/a.txt")), 2);
        assert_eq!(downloads.count(Path::new("/nothing")), 0);
        assert_eq!(downloads.all(), vec![("/x/a.txt".to_string(), 2)]);
        assert_eq!(*lines.lock().expect("lock"), ["/x/a.txt|127.0.0.1|40001|1", "/x/a.txt|127.0.0.1|40001|2"]);
    }
}
