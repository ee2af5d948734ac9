//! Download counters: every completed RETR, counted per file since the server started, exactly,
//! under any concurrency; each one is also logged as `/<path>|<client ip>|<client port>|<count>`.
//!
//! One [`Downloads`] is shared by every server of a cluster started in one process, so counts
//! are per cluster process, whichever server delivered the file. Main servers sharing a
//! registry on etcd also share the counts ([`Downloads::share`], [`SharedCounts`]): each
//! download is added there, and `SITE STATS` reads there; while the shared store cannot be
//! reached, downloads are counted here and added to it once it answers again.
//!
//! Bounded: at most [`MAX_TRACKED_FILES`] paths are counted; when a new path arrives with the
//! table full, the path with the fewest downloads is forgotten (its count starts again from 0
//! if it comes back). In the log line the path is percent-encoded where it could mislead a
//! reader of the console: `%`, `|` and control characters (so a file named `x|10.9.9.9|1|999`
//! cannot print a line that claims another client).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, OnceLock};

use super::console::console_line;
pub use super::console::{console, escape};

/// Most files counted at once.
pub const MAX_TRACKED_FILES: usize = 100_000;
/// Most files `SITE STATS` lists in one reply.
pub const MAX_LISTED: usize = 1000;

type LogLine = Box<dyn Fn(&str) + Send + Sync>;

/// Download counts kept outside this process and shared with other servers (etcd).
#[async_trait::async_trait]
pub trait SharedCounts: Send + Sync {
    /// Adds `by` to the count of `path` and returns the new count.
    async fn add(&self, path: &str, by: u64) -> Result<u64, String>;
    /// The count of `path`.
    async fn count(&self, path: &str) -> Result<u64, String>;
    /// The first `limit` counted files below `folder` (ending in `/`) by path, and how many
    /// there are in all.
    async fn under(&self, folder: &str, limit: usize) -> Result<(Vec<(String, u64)>, usize), String>;
    /// False while the store is known to be unreachable: then nothing waits for it.
    fn is_online(&self) -> bool {
        true
    }
}

/// The download counters and where their log lines go.
pub struct Downloads {
    /// Per path (hashed: a download finds its count in one comparison, where a tree of 2,000
    /// paths took 20; listings sort what they show).
    counts: Mutex<HashMap<String, u64>>,
    log: LogLine,
    shared: OnceLock<Arc<dyn SharedCounts>>,
    /// Downloads not yet added to the shared counts (it could not be reached), per path;
    /// bounded by [`MAX_TRACKED_FILES`] paths.
    pending: Mutex<BTreeMap<String, u64>>,
}

impl fmt::Debug for Downloads {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.counts.lock().map(|counts| counts.len()).unwrap_or(0);
        formatter.debug_struct("Downloads").field("files", &files).finish()
    }
}

impl Default for Downloads {
    /// Counters that print their log lines on standard output, the server console, through
    /// [`console`].
    fn default() -> Self {
        Downloads::new(console())
    }
}

impl Downloads {
    /// Counters that hand each log line to `log`.
    pub fn new(log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Downloads { counts: Mutex::default(), log: Box::new(log), shared: OnceLock::new(), pending: Mutex::default() }
    }

    /// Counts in `store` from now on, shared with the other servers using it; false if these
    /// counters already share a store.
    pub fn share(&self, store: Arc<dyn SharedCounts>) -> bool {
        self.shared.set(store).is_ok()
    }

    /// Counts one completed download as [`Downloads::record`] does, in the shared store when
    /// there is one (the count in the log line is then the cluster's). When the store cannot
    /// be reached, the download is counted here, kept to be added later, and logged with this
    /// process's count. `path` is an FTP path as [`normalize`] makes it
    /// (`SharedFolder::full_path`).
    pub async fn record_download(&self, path: &str, peer: SocketAddr) -> u64 {
        let Some(store) = self.online_store().await else {
            if self.shared.get().is_some() {
                self.keep_pending(path);
            }
            return self.record_normal(path, peer);
        };
        match store.add(path, 1).await {
            Ok(count) => {
                let mut counts = self.lock_counts();
                if counts.len() >= MAX_TRACKED_FILES && !counts.contains_key(path) {
                    evict_least_downloaded(&mut counts);
                }
                counts.insert(path.to_string(), count);
                drop(counts);
                (self.log)(&console_line(path, peer, count));
                count
            }
            Err(error) => {
                tracing::warn!(path, %error, "shared download count unreachable: counted here, added once it answers");
                self.keep_pending(path);
                self.record_normal(path, peer)
            }
        }
    }

    /// The shared store if there is one and it is reachable, after adding to it what was
    /// counted while it was not.
    async fn online_store(&self) -> Option<&dyn SharedCounts> {
        let store = self.shared.get()?.as_ref();
        if !store.is_online() {
            return None;
        }
        self.flush_pending(store).await;
        Some(store)
    }

    /// Remembers one download of `path` to add to the shared store later.
    fn keep_pending(&self, path: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.len() < MAX_TRACKED_FILES || pending.contains_key(path) {
            *pending.entry(path.to_string()).or_insert(0) += 1;
        }
    }

    /// Adds the downloads counted while the shared store was away.
    async fn flush_pending(&self, store: &dyn SharedCounts) {
        let waiting: Vec<(String, u64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::take(&mut *pending).into_iter().collect()
        };
        let mut failed = Vec::new();
        for (path, by) in waiting {
            if failed.is_empty() && store.add(&path, by).await.is_ok() {
                continue;
            }
            failed.push((path, by));
        }
        if !failed.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (path, by) in failed {
                *pending.entry(path).or_insert(0) += by;
            }
        }
    }

    /// How often `path` was downloaded, in the shared store when there is one (this process's
    /// count while it cannot be reached).
    pub async fn count_everywhere(&self, path: &Path) -> u64 {
        if let Some(store) = self.online_store().await {
            match store.count(&normalize(path)).await {
                Ok(count) => return count,
                Err(error) => {
                    tracing::warn!(%error, "shared download counts unreachable: answering with this server's")
                }
            }
        }
        self.count(path)
    }

    /// Like [`Downloads::first_under`], in the shared store when there is one.
    pub async fn first_under_everywhere(&self, prefix: &str, limit: usize) -> (Vec<(String, u64)>, usize) {
        if let Some(store) = self.online_store().await {
            let folder = if prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
            match store.under(&folder, limit).await {
                Ok(found) => return found,
                Err(error) => {
                    tracing::warn!(%error, "shared download counts unreachable: answering with this server's")
                }
            }
        }
        self.first_under(prefix, limit)
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one completed download of `path` by the client whose control connection comes
    /// from `peer`, logs it, and returns the file's count including this download.
    pub fn record(&self, path: &Path, peer: SocketAddr) -> u64 {
        self.record_normal(&normalize(path), peer)
    }

    /// [`Downloads::record`] of a path already normalized.
    fn record_normal(&self, path: &str, peer: SocketAddr) -> u64 {
        let count = {
            let mut counts = self.lock_counts();
            match counts.get_mut(path) {
                Some(count) => {
                    *count += 1;
                    *count
                }
                None => {
                    if counts.len() >= MAX_TRACKED_FILES {
                        evict_least_downloaded(&mut counts);
                    }
                    counts.insert(path.to_string(), 1);
                    1
                }
            }
        };
        (self.log)(&console_line(path, peer, count));
        count
    }

    /// How often `path` was downloaded.
    pub fn count(&self, path: &Path) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.get(&normalize(path)).copied().unwrap_or(0)
    }

    /// Every downloaded file with its count, sorted by path.
    pub fn all(&self) -> Vec<(String, u64)> {
        self.first(usize::MAX).0
    }

    /// The first `limit` downloaded files by path with their counts, and how many files there
    /// are in all.
    pub fn first(&self, limit: usize) -> (Vec<(String, u64)>, usize) {
        self.first_under("/", limit)
    }

    /// Like [`Downloads::first`], for the files below the folder `prefix` (`/alice`) only.
    pub fn first_under(&self, prefix: &str, limit: usize) -> (Vec<(String, u64)>, usize) {
        let counts = self.lock_counts();
        let folder = if prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        let mut below: Vec<(&String, &u64)> = counts.iter().filter(|(path, _)| path.starts_with(&folder)).collect();
        let total = below.len();
        // The first `limit` by path, sorted: a partial selection, then a sort of those only.
        if limit < total {
            below.select_nth_unstable_by(limit, |a, b| a.0.cmp(b.0));
            below.truncate(limit);
        }
        below.sort_unstable_by(|a, b| a.0.cmp(b.0));
        (below.into_iter().map(|(path, count)| (path.clone(), *count)).collect(), total)
    }
}

fn evict_least_downloaded(counts: &mut HashMap<String, u64>) {
    if let Some(path) = counts.iter().min_by_key(|(_, count)| **count).map(|(path, _)| path.clone()) {
        counts.remove(&path);
    }
}

/// `path` as an absolute FTP path (`/a/b.txt`): `.` dropped, `..` applied, never above `/`.
pub fn normalize(path: &Path) -> String {
    normalize_joined(Path::new(""), path)
}

/// `path` without its leading `/` when every part of it is a plain name (UTF-8, not empty, not
/// `.` or `..`): then that is already what its components would give back, joined by `/`.
pub(crate) fn plain_parts(path: &Path) -> Option<&str> {
    let text = path.to_str()?;
    let rest = text.strip_prefix('/').unwrap_or(text);
    // (Bytes, not `str::split`, whose pattern searcher cost more than the rest of this.)
    rest.as_bytes().split(|&byte| byte == b'/').all(|part| !matches!(part, b"" | b"." | b"..")).then_some(rest)
}

/// [`normalize`] of `path` taken below `prefix` (whether `path` is absolute or not), in one
/// pass and one allocation.
pub fn normalize_joined(prefix: &Path, path: &Path) -> String {
    // The usual paths (no home or a plain one, a plain path) need no walk through components.
    let plain_prefix = if prefix.as_os_str().is_empty() { Some("") } else { plain_parts(prefix) };
    if let (Some(prefix), Some(path)) = (plain_prefix, plain_parts(path)) {
        let mut normal = String::with_capacity(prefix.len() + path.len() + 2);
        for part in [prefix, path].into_iter().filter(|part| !part.is_empty()) {
            normal.push('/');
            normal.push_str(part);
        }
        return normal;
    }
    let mut normal = String::with_capacity(prefix.as_os_str().len() + path.as_os_str().len() + 2);
    for component in prefix.components().chain(path.components()) {
        match component {
            Component::Normal(part) => {
                normal.push('/');
                normal.push_str(&part.to_string_lossy());
            }
            Component::ParentDir => {
                let parent = normal.rfind('/').unwrap_or(0);
                normal.truncate(parent);
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if normal.is_empty() {
        normal.push('/');
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalize(Path::new("/a/./b/../c.txt")), "/a/c.txt");
        assert_eq!(normalize(Path::new("c.txt")), "/c.txt");
        assert_eq!(normalize(Path::new("/../../etc")), "/etc");
        assert_eq!(normalize(Path::new("/")), "/");
    }

    fn collecting() -> (Downloads, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        (Downloads::new(move |line| sink.lock().expect("lock").push(line.to_string())), lines)
    }

    #[test]
    fn records_count_and_log() {
        let (downloads, lines) = collecting();
        let peer: SocketAddr = "127.0.0.1:40001".parse().expect("literal");
        assert_eq!(downloads.record(Path::new("/x/a.txt"), peer), 1);
        assert_eq!(downloads.record(Path::new("x/./a.txt"), peer), 2);
        assert_eq!(downloads.count(Path::new("/x/a.txt")), 2);
        assert_eq!(downloads.count(Path::new("/nothing")), 0);
        assert_eq!(downloads.all(), vec![("/x/a.txt".to_string(), 2)]);
        assert_eq!(*lines.lock().expect("lock"), ["/x/a.txt|127.0.0.1|40001|1", "/x/a.txt|127.0.0.1|40001|2"]);
    }

    #[test]
    fn a_file_name_cannot_forge_a_log_line() {
        // Issue 9: a file named `x|10.9.9.9|1|999` printed a line that claimed another client.
        let (downloads, lines) = collecting();
        let peer: SocketAddr = "127.0.0.1:40001".parse().expect("literal");
        downloads.record(Path::new("/x|10.9.9.9|1|999"), peer);
        downloads.record(Path::new("/100%\nfake|1.2.3.4|5|6\u{85}"), peer);
        let lines = lines.lock().expect("lock");
        assert_eq!(lines[0], "/x%7C10.9.9.9%7C1%7C999|127.0.0.1|40001|1");
        assert_eq!(lines[1], "/100%25%0Afake%7C1.2.3.4%7C5%7C6%C2%85|127.0.0.1|40001|1");
        assert!(lines.iter().all(|line| line.split('|').count() == 4));
        assert_eq!(escape("plain/ü.txt"), "plain/ü.txt");
    }

    #[test]
    fn listings_are_sorted_by_path_limited_and_below_their_folder_only() {
        let (downloads, _lines) = collecting();
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        for path in ["/b/2", "/a/9", "/a/1", "/ab/x", "/a/3", "/a/2", "/a/1", "/a", "/a/sub/0"] {
            downloads.record(Path::new(path), peer);
        }
        let names = |listed: Vec<(String, u64)>| {
            listed.into_iter().map(|(path, count)| format!("{path}={count}")).collect::<Vec<_>>()
        };
        let (listed, total) = downloads.first_under("/a", 3);
        assert_eq!((names(listed), total), (vec!["/a/1=2".to_string(), "/a/2=1".into(), "/a/3=1".into()], 5));
        let (listed, total) = downloads.first_under("/a/", 10);
        assert_eq!(
            (names(listed), total),
            (vec!["/a/1=2".to_string(), "/a/2=1".into(), "/a/3=1".into(), "/a/9=1".into(), "/a/sub/0=1".into()], 5)
        );
        assert_eq!(downloads.first_under("/a", 0), (vec![], 5));
        assert_eq!(downloads.first_under("/none", 10), (vec![], 0));
        let all = names(downloads.all());
        assert_eq!(all, ["/a=1", "/a/1=2", "/a/2=1", "/a/3=1", "/a/9=1", "/a/sub/0=1", "/ab/x=1", "/b/2=1"]);
    }

    #[test]
    fn the_table_is_bounded_and_keeps_the_popular_files() {
        let (downloads, _lines) = collecting();
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        downloads.record(Path::new("/popular"), peer);
        downloads.record(Path::new("/popular"), peer);
        for index in 0..MAX_TRACKED_FILES + 10 {
            downloads.record(Path::new(&format!("/f{index}")), peer);
        }
        let (listed, total) = downloads.first(3);
        assert_eq!(total, MAX_TRACKED_FILES);
        assert_eq!(listed.len(), 3);
        assert_eq!(downloads.count(Path::new("/popular")), 2, "the most downloaded file stays counted");
    }

    /// The definition [`normalize_joined`] follows: the components kept in a list, `..`
    /// dropping the last.
    fn normalized_by_list(prefix: &Path, path: &Path) -> String {
        let mut parts: Vec<String> = Vec::new();
        for component in prefix.components().chain(path.components()) {
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

    proptest! {
        #[test]
        fn normalizing_in_one_pass_agrees_with_the_list_definition(
            prefix in "(/?(a|bc|\\.|\\.\\.|é)(/(a|bc|\\.|\\.\\.|é)){0,3})?",
            path in "/?(a|x y|\\.|\\.\\.|/|é|%)(/(a|x y|\\.|\\.\\.||é|%)){0,5}/?",
        ) {
            prop_assert_eq!(normalize_joined(Path::new(&prefix), Path::new(&path)), normalized_by_list(Path::new(&prefix), Path::new(&path)));
            prop_assert_eq!(normalize(Path::new(&path)), normalized_by_list(Path::new(""), Path::new(&path)));
        }

    }
}
