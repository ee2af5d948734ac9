//! rclone (Debian's 1.60) against the main server: the commands a user runs, each ending without
//! an error line and with modification times kept (MFMT). Before the patched libunftp, copying
//! into a new folder failed (`550` after `150` on LIST), nested `mkdir` failed the same way and
//! every file logged `SetModTime is not supported`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::{names_in, run_stock, stock_client, TestCluster};

/// A cluster with no workers: rclone needs only the file side.
async fn server() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await
}

/// Runs `rclone ARGS` with no configuration file; returns its combined log. Fails the test on a
/// non-zero exit or on any ERROR line.
async fn rclone(program: &Path, args: &[&str]) -> String {
    let mut all = vec!["--config", "/dev/null", "--low-level-retries", "1", "--retries", "1", "--contimeout", "10s"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = run_stock(program, &all).await;
    let log = format!("{stdout}{stderr}");
    assert!(ok, "rclone {args:?} failed:\n{log}");
    assert!(!log.contains("ERROR"), "rclone {args:?} logged an error:\n{log}");
    assert!(!log.contains("not supported"), "rclone {args:?} missed a feature:\n{log}");
    log
}

/// rclone's on-the-fly remote for the server, with any name and password (open mode).
fn remote(cluster: &TestCluster, obscured: &str, path: &str) -> String {
    format!(":ftp,host=127.0.0.1,port={},user=rclone,pass={obscured}:{path}", cluster.main().port())
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).expect("mtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copies_syncs_checks_moves_makes_deletes_and_purges_keeping_times() {
    let Some(program) = stock_client("rclone") else { return };
    let cluster = server().await;
    let (ok, obscured, stderr) = run_stock(&program, &["--config", "/dev/null", "obscure", "secret"]).await;
    assert!(ok, "{stderr}");
    let obscured = obscured.trim();
    let local = tempfile::tempdir().expect("temporary folder");
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_934_245); // 2020-01-02 03:04:05
    for (name, body) in [("one.txt", "one\n"), ("a/b/c/deep.txt", "deep\n")] {
        let path = local.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write");
        std::fs::File::options().write(true).open(&path).and_then(|file| file.set_modified(old)).expect("set mtime");
    }
    let source = local.path().to_str().expect("utf-8 path");
    let served = cluster.root.path();

    // copy into a folder that does not exist yet, nested folders included.
    rclone(&program, &["copy", source, &remote(&cluster, obscured, "new")]).await;
    assert_eq!(std::fs::read_to_string(served.join("new/a/b/c/deep.txt")).expect("copied"), "deep\n");
    assert_eq!(modified(&served.join("new/one.txt")), old, "MFMT kept the modification time");
    assert_eq!(modified(&served.join("new/a/b/c/deep.txt")), old);
    // copy again into the folder that now exists: nothing to do, nothing fails.
    rclone(&program, &["copy", source, &remote(&cluster, obscured, "new")]).await;
    let log = rclone(&program, &["check", "--download", source, &remote(&cluster, obscured, "new")]).await;
    assert!(log.contains("0 differences found") && log.contains("2 matching files"), "{log}");

    // sync removes what the source no longer has.
    std::fs::remove_file(local.path().join("one.txt")).expect("remove");
    std::fs::write(local.path().join("two.txt"), "two\n").expect("write");
    rclone(&program, &["sync", source, &remote(&cluster, obscured, "new")]).await;
    assert_eq!(names_in(&served.join("new")), ["a", "two.txt"]);

    // moveto renames across folders.
    rclone(
        &program,
        &["moveto", &remote(&cluster, obscured, "new/two.txt"), &remote(&cluster, obscured, "new/a/2.txt")],
    )
    .await;
    assert_eq!(names_in(&served.join("new")), ["a"]);
    assert_eq!(std::fs::read_to_string(served.join("new/a/2.txt")).expect("moved"), "two\n");

    // mkdir of nested folders, then a copy into the deepest one.
    rclone(&program, &["mkdir", &remote(&cluster, obscured, "x/y/z")]).await;
    assert!(served.join("x/y/z").is_dir());
    rclone(&program, &["copy", source, &remote(&cluster, obscured, "x/y/z")]).await;
    assert!(served.join("x/y/z/a/b/c/deep.txt").is_file());

    // delete removes files and keeps folders; purge removes the whole tree.
    rclone(&program, &["delete", &remote(&cluster, obscured, "new")]).await;
    assert!(!served.join("new/a/2.txt").exists() && served.join("new/a/b/c").is_dir());
    rclone(&program, &["purge", &remote(&cluster, obscured, "x")]).await;
    assert!(!served.join("x").exists());
    assert_eq!(names_in(served), ["new"]);
}
