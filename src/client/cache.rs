//! The client's whole-file cache, as AFS caches files and NFS validates them: a downloaded file
//! is kept whole; a later `get` of it asks the server for `MDTM` and `SIZE` and copies the file
//! from the cache when both are unchanged (no data connection), and within the freshness
//! window after the last check (default 3 s, NFS's lower bound) does not even ask.
//!
//! Each entry is two files named by a hash of the server, user and remote path: `KEY.data` (the
//! file) and `KEY.meta` (size, the `MDTM` text, SHA-256, when it was last validated and used).
//! Both are written to temporary names and renamed into place, the metadata last, so a crash
//! leaves no entry that looks whole. An entry is served only if its data has the recorded size
//! and, as it is copied out, the recorded SHA-256: a truncated or altered entry is removed and
//! the file downloaded again. The cache holds at most `max_bytes`; the least recently used
//! entries go first.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// The freshness window unless `--cache-fresh` says otherwise.
pub const DEFAULT_FRESH: Duration = Duration::from_secs(3);
/// The size bound unless `--cache-size` says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The cache in one folder.
#[derive(Clone, Debug)]
pub struct FileCache {
    dir: PathBuf,
    fresh: Duration,
    max_bytes: u64,
}

/// What the cache knows of one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its size in bytes.
    pub size: u64,
    /// The server's `MDTM` answer when it was downloaded or last validated.
    pub mdtm: String,
    /// SHA-256 of the data, in hex.
    pub sha256: String,
    /// When the server last confirmed it (seconds since the epoch).
    pub validated: f64,
    /// When it was last used (for LRU eviction).
    pub used: f64,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).unwrap_or(0.0)
}

impl Entry {
    fn render(&self) -> String {
        format!(
            "size={}\nmdtm={}\nsha256={}\nvalidated={}\nused={}\n",
            self.size, self.mdtm, self.sha256, self.validated, self.used
        )
    }

    fn parse(text: &str) -> Option<Entry> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            fields.insert(key, value);
        }
        let sha256 = fields.get("sha256")?.to_string();
        if sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        Some(Entry {
            size: fields.get("size")?.parse().ok()?,
            mdtm: fields.get("mdtm")?.to_string(),
            sha256,
            validated: fields.get("validated")?.parse().ok()?,
            used: fields.get("used")?.parse().ok()?,
        })
    }
}

/// A writer that hashes what passes through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    /// Hashes everything written to `inner`.
    pub fn new(inner: W) -> Self {
        Hashing { inner, hasher: Sha256::new() }
    }

    /// The writer and the hex SHA-256 of everything written.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        self.hasher.update(&data[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl FileCache {
    /// The cache in `dir` (created, mode 0700, if missing).
    pub fn open(dir: &Path, fresh: Duration, max_bytes: u64) -> io::Result<FileCache> {
        fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(FileCache { dir: dir.to_path_buf(), fresh, max_bytes })
    }

    /// `$XDG_CACHE_HOME/ftpcalc`, else `~/.cache/ftpcalc`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("ftpcalc"))
    }

    /// The key of `path` on `server` as `user`.
    pub fn key(server: &str, user: &str, path: &str) -> String {
        hex(&Sha256::digest(format!("{server}\n{user}\n{path}").as_bytes()))
    }

    fn data(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.data"))
    }

    fn meta(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.meta"))
    }

    /// The entry for `key`, if there is a whole one; a broken one (metadata unreadable, data
    /// missing or of another size) is removed.
    pub fn entry(&self, key: &str) -> Option<Entry> {
        let text = fs::read_to_string(self.meta(key)).ok()?;
        let entry = Entry::parse(&text);
        let data_size = fs::metadata(self.data(key)).map(|metadata| metadata.len()).ok();
        match entry {
            Some(entry) if data_size == Some(entry.size) => Some(entry),
            _ => {
                self.remove(key);
                None
            }
        }
    }

    /// True when `entry` was validated within the freshness window.
    pub fn is_fresh(&self, entry: &Entry) -> bool {
        let age = now() - entry.validated;
        (0.0..self.fresh.as_secs_f64()).contains(&age)
    }

    /// Copies the entry's data to `to`, checking its SHA-256 on the way. `Ok(false)` (and the
    /// entry removed) when the data is not what was stored.
    pub fn copy_out(&self, key: &str, entry: &Entry, to: &Path) -> io::Result<bool> {
        let mut data = File::open(self.data(key))?;
        let mut out = Hashing::new(File::create(to)?);
        let copied = io::copy(&mut data, &mut out)?;
        let (file, sha256) = out.finish();
        file.sync_all()?;
        if copied != entry.size || sha256 != entry.sha256 {
            self.remove(key);
            return Ok(false);
        }
        Ok(true)
    }

    /// Records that the entry was used now and, if `validated`, confirmed by the server now.
    pub fn touch(&self, key: &str, entry: &Entry, validated: bool) {
        let mut entry = entry.clone();
        entry.used = now();
        if validated {
            entry.validated = entry.used;
        }
        let _ = self.write_meta(key, &entry);
    }

    fn write_meta(&self, key: &str, entry: &Entry) -> io::Result<()> {
        let temporary = self.dir.join(format!(".{key}.meta.{}", std::process::id()));
        fs::write(&temporary, entry.render())?;
        fs::rename(&temporary, self.meta(key))
    }

    /// Keeps a copy of `file` (a complete download of `size` bytes with `sha256`, whose
    /// `MDTM` the server gave as `mdtm`), then evicts least recently used entries down to the
    /// bound. A file larger than the whole cache is not kept.
    pub fn store(&self, key: &str, file: &Path, size: u64, mdtm: &str, sha256: &str) -> io::Result<()> {
        if size > self.max_bytes {
            self.remove(key);
            return Ok(());
        }
        let _ = fs::remove_file(self.meta(key));
        let temporary = self.dir.join(format!(".{key}.data.{}", std::process::id()));
        let stored = fs::copy(file, &temporary).and_then(|copied| {
            if copied == size {
                File::open(&temporary)?.sync_all()?;
                fs::rename(&temporary, self.data(key))
            } else {
                Err(io::Error::other("the file changed while it was cached"))
            }
        });
        if let Err(error) = stored {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        let time = now();
        let entry = Entry { size, mdtm: mdtm.to_string(), sha256: sha256.to_string(), validated: time, used: time };
        self.write_meta(key, &entry)?;
        self.evict(key);
        Ok(())
    }

    /// Removes the entry for `key`.
    pub fn remove(&self, key: &str) {
        let _ = fs::remove_file(self.meta(key));
        let _ = fs::remove_file(self.data(key));
    }

    /// Removes least recently used entries (never `keep`) until the cache fits its bound.
    fn evict(&self, keep: &str) {
        let Ok(listing) = fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(String, Entry)> = listing
            .filter_map(Result::ok)
            .filter_map(|item| {
                let name = item.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".meta")?.to_string();
                if key.starts_with('.') {
                    return None;
                }
                let entry = Entry::parse(&fs::read_to_string(item.path()).ok()?)?;
                Some((key, entry))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, entry)| entry.size).sum();
        entries.sort_by(|a, b| a.1.used.total_cmp(&b.1.used));
        for (key, entry) in entries {
            if total <= self.max_bytes {
                break;
            }
            if key != keep {
                self.remove(&key);
                total -= entry.size;
            }
        }
    }

    /// Reads all of `reader` and returns the hex SHA-256 (for tests and checks).
    pub fn sha256_of(mut reader: impl Read) -> io::Result<String> {
        let mut hasher = Sha256::new();
        io::copy(&mut reader, &mut hasher)?;
        Ok(hex(&hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max: u64) -> FileCache {
        FileCache::open(&dir.join("cache"), DEFAULT_FRESH, max).expect("open")
    }

    fn stored(cache: &FileCache, dir: &Path, key: &str, body: &[u8]) {
        let file = dir.join(format!("{key}.src"));
        fs::write(&file, body).expect("write");
        let sha = FileCache::sha256_of(body).expect("hash");
        cache.store(key, &file, body.len() as u64, "20260101000000", &sha).expect("store");
    }

    #[test]
    fn a_stored_file_comes_back_whole_and_fresh() {
        let dir = tempfile::tempdir().expect("folder");
        let cache = cache(dir.path(), 1 << 20);
        stored(&cache, dir.path(), "k", b"hello");
        let entry = cache.entry("k").expect("an entry");
        assert_eq!((entry.size, entry.mdtm.as_str()), (5, "20260101000000"));
        assert!(cache.is_fresh(&entry));
        let out = dir.path().join("out");
        assert!(cache.copy_out("k", &entry, &out).expect("copy"));
        assert_eq!(fs::read(&out).expect("read"), b"hello");
    }

    #[test]
    fn truncated_altered_or_half_written_entries_are_never_served() {
        let dir = tempfile::tempdir().expect("folder");
        let cache = cache(dir.path(), 1 << 20);
        stored(&cache, dir.path(), "short", b"hello world");
        File::options().write(true).open(cache.data("short")).and_then(|file| file.set_len(4)).expect("truncate");
        assert!(cache.entry("short").is_none(), "a truncated entry");
        assert!(!cache.meta("short").exists(), "and it is removed");

        stored(&cache, dir.path(), "altered", b"hello world");
        fs::write(cache.data("altered"), b"HELLO WORLD").expect("alter");
        let entry = cache.entry("altered").expect("same size, so it looks whole");
        assert!(!cache.copy_out("altered", &entry, &dir.path().join("out")).expect("copy"), "the hash tells");
        assert!(cache.entry("altered").is_none());

        stored(&cache, dir.path(), "garbled", b"x");
        fs::write(cache.meta("garbled"), "size=1\nmdtm=\n").expect("garble");
        assert!(cache.entry("garbled").is_none());
    }

    #[test]
    fn the_least_recently_used_entries_go_when_the_cache_is_full() {
        let dir = tempfile::tempdir().expect("folder");
        let cache = cache(dir.path(), 25);
        stored(&cache, dir.path(), "a", &[1; 10]);
        std::thread::sleep(Duration::from_millis(20));
        stored(&cache, dir.path(), "b", &[2; 10]);
        std::thread::sleep(Duration::from_millis(20));
        cache.touch("a", &cache.entry("a").expect("a"), false);
        std::thread::sleep(Duration::from_millis(20));
        stored(&cache, dir.path(), "c", &[3; 10]);
        assert!(cache.entry("a").is_some() && cache.entry("c").is_some(), "recently used stay");
        assert!(cache.entry("b").is_none(), "the least recently used went");
        stored(&cache, dir.path(), "huge", &[4; 30]);
        assert!(cache.entry("huge").is_none(), "larger than the whole cache: not kept");
    }
}
