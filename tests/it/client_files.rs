//! The client's file habits (issue 15): the whole-file cache (a second `get` of an unchanged
//! file moves no data), local no-clobber, and `get -c` / `put -c` after an interruption.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::client::scripted_server;
use crate::support::{names_in, run_client, ClientRun, TestCluster};

async fn server() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await
}

/// Downloads the server counted for `path` (from its console log lines).
fn downloads_of(cluster: &TestCluster, path: &str) -> usize {
    let log = cluster.download_log.lock().expect("log");
    log.iter().filter(|line| line.starts_with(&format!("{path}|"))).count()
}

/// Sets `path`'s modification time `seconds_ago` seconds in the past (a change MDTM sees).
fn age(path: &Path, seconds_ago: u64) {
    let time = SystemTime::now() - Duration::from_secs(seconds_ago);
    std::fs::File::options().write(true).open(path).and_then(|file| file.set_modified(time)).expect("set mtime");
}

fn metric(cluster: &TestCluster, series: &str) -> f64 {
    let text = cluster.cluster.telemetry().metrics.render();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[track_caller]
fn ok(run: &ClientRun) -> &str {
    assert_eq!(run.code, 0, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    run.stdout.trim_end()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_get_of_an_unchanged_file_comes_from_the_cache_and_a_changed_one_does_not() {
    let cluster = server().await;
    let remote = cluster.write_file("data.bin", &[1u8; 100_000]);
    age(&remote, 100);
    let local = tempfile::tempdir().expect("folder");
    let cache = tempfile::tempdir().expect("folder");
    let cache_dir = cache.path().to_str().expect("utf-8");
    let main = cluster.main();
    let get = |extra: &'static [&'static str]| {
        let local = local.path().to_path_buf();
        async move {
            let mut args = vec!["--cache-dir", cache_dir, "--cache-fresh", "0", "get", "data.bin"];
            args.splice(5..5, extra.iter().copied());
            run_client(main, &local, &args, "").await
        }
    };

    let first = get(&[]).await;
    assert_eq!(ok(&first), local.path().join("data.bin").display().to_string());
    assert!(!first.stderr.contains("cached"), "{}", first.stderr);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 1);

    // Unchanged: asked with MDTM and SIZE, copied from the cache, no data connection.
    let second = get(&[]).await;
    assert_eq!(ok(&second), local.path().join("data_copy1.bin").display().to_string(), "local no-clobber");
    assert!(second.stderr.contains("data.bin: cached"), "{}", second.stderr);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 1, "the server sent nothing");
    assert_eq!(std::fs::read(local.path().join("data_copy1.bin")).expect("read"), vec![1u8; 100_000]);

    // Changed on the server (same size, another modification time): downloaded again.
    std::fs::write(&remote, [2u8; 100_000]).expect("change");
    age(&remote, 50);
    let third = get(&["-f"]).await;
    ok(&third);
    assert!(!third.stderr.contains("cached"), "{}", third.stderr);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 2);
    assert_eq!(std::fs::read(local.path().join("data.bin")).expect("read"), vec![2u8; 100_000], "-f replaced it");

    // Within the freshness window the server is not asked (the old copy may be served); after
    // the window, never.
    std::fs::write(&remote, [3u8; 99_999]).expect("change");
    let fresh_args = ["--cache-dir", cache_dir, "--cache-fresh", "2", "get", "-f", "data.bin"];
    let within = run_client(main, local.path(), &fresh_args, "").await;
    ok(&within);
    assert!(within.stderr.contains("cached"), "within the window: {}", within.stderr);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = run_client(main, local.path(), &fresh_args, "").await;
    ok(&after);
    assert!(!after.stderr.contains("cached"), "after the window: {}", after.stderr);
    assert_eq!(std::fs::read(local.path().join("data.bin")).expect("read"), vec![3u8; 99_999]);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 3);

    // --no-cache always downloads.
    let uncached = run_client(main, local.path(), &["--no-cache", "get", "-f", "data.bin"], "").await;
    ok(&uncached);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 4);

    // A truncated cache entry is noticed, not served, and replaced.
    let data_file = std::fs::read_dir(cache.path())
        .expect("cache folder")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|extension| extension == "data"))
        .expect("a cached file");
    std::fs::File::options().write(true).open(&data_file).and_then(|file| file.set_len(10)).expect("truncate");
    let repaired = get(&["-f"]).await;
    ok(&repaired);
    assert!(!repaired.stderr.contains("cached"), "{}", repaired.stderr);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 5);
    assert_eq!(std::fs::read(local.path().join("data.bin")).expect("read"), vec![3u8; 99_999]);
    let cached_again = get(&["-f"]).await;
    ok(&cached_again);
    assert!(cached_again.stderr.contains("cached"), "{}", cached_again.stderr);
    assert_eq!(downloads_of(&cluster, "/data.bin"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_download_continues_with_get_c_and_an_upload_with_put_c_byte_for_byte() {
    let cluster = server().await;
    let body = vec![7u8; 1_000_000];
    cluster.write_file("big.bin", &body);
    let local = tempfile::tempdir().expect("folder");

    // A peer sends 1,000 of the 1,000,000 bytes and hangs up: the partial file stays.
    let cutting = scripted_server("230 welcome").await;
    let cut = run_client(cutting, local.path(), &["--no-cache", "get", "big.bin"], "").await;
    assert_eq!(cut.code, 2, "{}", cut.stderr);
    assert!(cut.stderr.contains("get -c big.bin continues it"), "{}", cut.stderr);
    assert_eq!(names_in(local.path()), [".big.bin.ftpcalc-part"]);

    // `get -c` on the real server asks only for the rest (REST 1000).
    let resumed = run_client(cluster.main(), local.path(), &["get", "-c", "big.bin"], "").await;
    assert_eq!(ok(&resumed), local.path().join("big.bin").display().to_string());
    assert_eq!(std::fs::read(local.path().join("big.bin")).expect("read"), body);
    assert_eq!(names_in(local.path()), ["big.bin"]);
    assert_eq!(metric(&cluster, "ftpcalc_transfer_bytes_total{direction=\"download\"}"), 999_000.0);
    let again = run_client(cluster.main(), local.path(), &["get", "-c", "big.bin"], "").await;
    ok(&again);
    assert!(again.stderr.contains("already complete"), "{}", again.stderr);

    // `put -c`: the server holds the first half (a short upload); only the rest is sent.
    let upload: Vec<u8> = (0..1_000_000u32).map(|index| (index % 251) as u8).collect();
    std::fs::write(local.path().join("up.bin"), &upload).expect("write");
    cluster.write_file("up.bin", &upload[..400_000]);
    let put = run_client(cluster.main(), local.path(), &["put", "-c", "up.bin"], "").await;
    assert_eq!(ok(&put), "/up.bin");
    assert_eq!(std::fs::read(cluster.root.path().join("up.bin")).expect("read"), upload);
    assert_eq!(metric(&cluster, "ftpcalc_transfer_bytes_total{direction=\"upload\"}"), 600_000.0);
    // A remote file longer than the local one cannot be continued: a clear message.
    std::fs::write(local.path().join("up.bin"), &upload[..10]).expect("shorten");
    let longer = run_client(cluster.main(), local.path(), &["put", "-c", "up.bin"], "").await;
    assert_eq!(longer.code, 2);
    assert!(longer.stderr.contains("cannot continue up.bin"), "{}", longer.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_commands_and_mget_mput_with_patterns_work_in_a_shell() {
    let cluster = server().await;
    let local = tempfile::tempdir().expect("folder");
    for name in ["a.csv", "b.csv", "notes.txt"] {
        std::fs::write(local.path().join(name), format!("{name} body")).expect("write");
    }
    std::fs::create_dir(local.path().join("back")).expect("mkdir");
    let script = "mkdir docs\ncd docs\npwd\nmput *.csv\nlcd back\nmget *.c?v\nmv a.csv renamed.csv\nrm b.csv\n\
                  cd ..\nrmdir docs\nhelp mget\nmget *.none\n";
    let run = run_client(cluster.main(), local.path(), &["--no-cache"], script).await;
    assert_eq!(run.code, 1, "rmdir of a non-empty folder failed, the rest went on: {}", run.stderr);
    let served = cluster.root.path().join("docs");
    assert_eq!(names_in(&served), ["renamed.csv"]);
    assert_eq!(std::fs::read_to_string(served.join("renamed.csv")).expect("read"), "a.csv body");
    let back = local.path().join("back");
    assert_eq!(names_in(&back), ["a.csv", "b.csv"]);
    assert_eq!(std::fs::read_to_string(back.join("b.csv")).expect("read"), "b.csv body");
    for line in ["/docs", "/docs/a.csv", "/docs/b.csv", "usage: mget PATTERN ...", "example: mget *.txt"] {
        assert!(run.stdout.lines().any(|printed| printed == line), "{line:?} in {}", run.stdout);
    }
    assert!(run.stderr.contains("rmdir docs: the server said 550"), "{}", run.stderr);
    assert!(run.stderr.contains("mget: nothing matches *.none"), "{}", run.stderr);
}
