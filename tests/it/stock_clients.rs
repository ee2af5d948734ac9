//! Stock FTP clients (curl, Python's ftplib, lftp, wget, tnftp) against a real cluster: SITE
//! commands, listings, downloads and uploads, passive and active mode, IPv4 and IPv6. rclone has
//! its own module.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{names_in, run_stock, run_stock_with_input, stock_client, TestCluster};

const CONTENTS: &[u8] = b"hello from the ftpcalc test suite\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sends_site_commands_lists_and_downloads() {
    let Some(curl) = stock_client("curl") else {
        return;
    };
    let cluster = TestCluster::start().await;
    cluster.write_file("hello.txt", CONTENTS);
    let url = format!("ftp://{}/", cluster.main());
    let (ok, _, stderr) =
        run_stock(&curl, &["-sS", "-v", "--max-time", "20", "-Q", "SITE ADD 2 3", "-Q", "SITE LOOKUP MUL", &url]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("< 200 5 (computed by SV1)"), "{stderr}");
    assert!(stderr.contains(&format!("< 200 MUL SV3={}", cluster.address("SV3"))), "{stderr}");
    let (ok, listing, stderr) = run_stock(&curl, &["-sS", "--max-time", "20", &url]).await;
    assert!(ok && listing.contains("hello.txt"), "{listing}{stderr}");
    let (ok, body, stderr) = run_stock(&curl, &["-sS", "--max-time", "20", &format!("{url}hello.txt")]).await;
    assert!(ok && body.as_bytes() == CONTENTS, "{body:?} {stderr}");
    // Active mode (PORT), which classic clients use.
    let (ok, body, stderr) =
        run_stock(&curl, &["-sS", "--max-time", "20", "--disable-eprt", "-P", "127.0.0.1", &format!("{url}hello.txt")])
            .await;
    assert!(ok && body.as_bytes() == CONTENTS, "active mode: {body:?} {stderr}");
    // A folder's URL without the trailing slash: a clear "does not exist" (libunftp patch 7;
    // curl used to report "transfer closed with 4096 bytes remaining").
    std::fs::create_dir(cluster.root.path().join("folder")).expect("mkdir");
    let (ok, _, stderr) = run_stock(&curl, &["-sS", "--max-time", "20", &format!("{url}folder")]).await;
    assert!(!ok && stderr.contains("(78) The file does not exist"), "{stderr}");
    // A refused SITE command makes curl fail with its "quote command" error, naming the reply.
    let (ok, _, stderr) = run_stock(&curl, &["-sS", "-v", "--max-time", "20", "-Q", "SITE ADD 2 x", &url]).await;
    assert!(!ok && stderr.contains("< 501 operand 2 (x) is not an integer"), "{stderr}");
}

const FTPLIB_SCRIPT: &str = r#"
import ftplib, io, sys
host, port, passive = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "passive"
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=20)
ftp.login("py", "secret")
ftp.set_pasv(passive)
print(ftp.sendcmd("SITE ADD 2 3"))
print(ftp.sendcmd("SITE INC 99999999999999999999"))
try:
    ftp.sendcmd("SITE LOOKUP")
except ftplib.error_perm as error:
    print("refused", error)
print("names", ftp.nlst())
lines = []
ftp.retrlines("LIST", lines.append)
print("list", lines)
ftp.retrlines("MLSD", lines.append)
print("mlsd", [line for line in lines if "hello.txt" in line])
# mlsd(facts=...) sends OPTS MLST first (it used to get 501 and raise).
print("mlsd facts", [entry for entry in ftp.mlsd(facts=["size", "type"]) if entry[0] == "hello.txt"])
data = io.BytesIO()
ftp.retrbinary("RETR hello.txt", data.write)
print("body", data.getvalue())
ftp.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ftplib_sends_site_commands_lists_and_downloads_in_both_modes() {
    let Some(python) = stock_client("python3") else {
        return;
    };
    let cluster = TestCluster::start().await;
    cluster.write_file("hello.txt", CONTENTS);
    let port = cluster.main().port().to_string();
    for mode in ["passive", "active"] {
        let (ok, stdout, stderr) = run_stock(&python, &["-c", FTPLIB_SCRIPT, "127.0.0.1", &port, mode]).await;
        assert!(ok, "{mode}: {stdout}{stderr}");
        for expected in [
            "200 5 (computed by SV1)",
            "200 100000000000000000000 (computed by SV4)",
            "refused 501 LOOKUP takes a service name",
            "names ['hello.txt']",
            "hello.txt'",
            "type=file",
            "mlsd facts [('hello.txt', {'type': 'file', 'size': '34'})]",
            r"body b'hello from the ftpcalc test suite\n'",
        ] {
            assert!(stdout.contains(expected), "{mode}: {stdout:?} lacks {expected:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_sends_site_commands_lists_and_downloads() {
    let Some(lftp) = stock_client("lftp") else {
        return;
    };
    let cluster = TestCluster::start().await;
    cluster.write_file("hello.txt", CONTENTS);
    let download = tempfile::tempdir().expect("temporary folder");
    let target = download.path().join("copy.txt");
    let script = format!(
        "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; \
         quote SITE ADD 2 3; quote SITE SERVERS; cls -1; ls hello.txt; get hello.txt -o {}; bye",
        target.display()
    );
    let main = cluster.main();
    let (ok, stdout, stderr) =
        run_stock(&lftp, &["-u", "lftp,secret", "-p", &main.port().to_string(), "-e", &script, "127.0.0.1"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("200 5 (computed by SV1)"), "{stdout}");
    assert!(stdout.contains(&format!("SV2 {} worker SUB", cluster.address("SV2"))), "{stdout}");
    assert!(stdout.lines().any(|line| line.trim() == "hello.txt"), "{stdout}");
    // `ls FILE` (`LIST hello.txt`) shows the file's own line (it failed with `550`).
    assert!(stdout.lines().any(|line| line.starts_with("-r") && line.ends_with(" hello.txt")), "{stdout}");
    assert_eq!(std::fs::read(&target).expect("downloaded"), CONTENTS);
}

/// A small tree with nested folders, an empty file, and names with spaces and UTF-8.
fn sample_tree(root: &Path) {
    let files: [(&str, &[u8]); 5] = [
        ("top.txt", b"top\n"),
        ("empty.bin", b""),
        ("with space \u{e9}t\u{e9}.txt", b"spaces and utf-8\n"),
        ("a/b/c/deep.txt", b"deep\n"),
        ("a/\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{6587}\u{4ef6}.dat", &[0, 1, 2, 255, 254, 13, 10, 13]),
    ];
    for (name, contents) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
        // A whole second in the past, so that a kept time is told from a new one.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
        std::fs::File::options().write(true).open(&path).and_then(|file| file.set_modified(old)).expect("mtime");
    }
}

/// Every file below `root` with its contents, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("read folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("below root").to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(&path).expect("read file"));
            }
        }
    }
    files
}

/// A tree lftp mirrored up to `/up` of a fresh cluster and back down to `back/down`, its
/// settings first (`set ...;`), both copies checked byte for byte; lftp's stderr for more.
struct Mirrored {
    cluster: TestCluster,
    local: tempfile::TempDir,
    back: tempfile::TempDir,
    stderr: String,
}

async fn mirror_with_lftp(lftp: &Path, settings: &str) -> Mirrored {
    let cluster = TestCluster::start().await;
    let local = tempfile::tempdir().expect("temporary folder");
    sample_tree(local.path());
    let back = tempfile::tempdir().expect("temporary folder");
    let script = format!(
        "{settings} set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; \
         mirror -R '{}' /up; mirror /up '{}'; bye",
        local.path().display(),
        back.path().join("down").display()
    );
    let port = cluster.main().port().to_string();
    let (ok, stdout, stderr) = run_stock(lftp, &["-u", "lftp,secret", "-p", &port, "-e", &script, "127.0.0.1"]).await;
    assert!(ok, "{stdout}{stderr}");
    let original = tree(local.path());
    assert_eq!(original.len(), 5);
    assert!(tree(&cluster.root.path().join("up")) == original, "uploaded tree differs");
    assert!(tree(&back.path().join("down")) == original, "downloaded tree differs");
    Mirrored { cluster, local, back, stderr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_mirrors_a_tree_up_and_down_byte_for_byte() {
    let Some(lftp) = stock_client("lftp") else { return };
    let Mirrored { cluster, local, back, .. } = mirror_with_lftp(&lftp, "").await;
    // Modification times survive both ways (MFMT up, MDTM down), to the second.
    for name in tree(local.path()).keys() {
        let mtime = |root: &Path| std::fs::metadata(root.join(name)).and_then(|m| m.modified()).expect("mtime");
        assert_eq!(mtime(&cluster.root.path().join("up")), mtime(local.path()), "{name} up");
        assert_eq!(mtime(&back.path().join("down")), mtime(local.path()), "{name} down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_pipelining_its_commands_mirrors_a_tree_up_and_down_byte_for_byte() {
    // With `ftp:sync-mode off` lftp sends commands without waiting for the replies of the ones
    // before (libunftp patches 37, 42 and 44 keep the replies in order).
    let Some(lftp) = stock_client("lftp") else { return };
    let Mirrored { stderr, .. } = mirror_with_lftp(&lftp, "debug 10; set ftp:sync-mode off;").await;
    // lftp did pipeline: its debug log shows a transfer command sent right behind `PASV`, before
    // the `227` came.
    let sent: Vec<&str> = stderr.lines().filter(|line| line.starts_with("--->") || line.starts_with("<---")).collect();
    let transfer = |line: &str| ["---> RETR", "---> STOR", "---> MLSD"].iter().any(|command| line.starts_with(command));
    let pipelined = sent.windows(2).filter(|pair| pair[0] == "---> PASV" && transfer(pair[1])).count();
    assert!(pipelined >= 10, "PASV + a transfer command pipelined {pipelined} times:\n{}", sent.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_downloads_a_tree_and_curl_uploads_byte_for_byte() {
    let (Some(wget), Some(curl)) = (stock_client("wget"), stock_client("curl")) else { return };
    let cluster = TestCluster::start().await;
    sample_tree(&cluster.root.path().join("tree"));
    let down = tempfile::tempdir().expect("temporary folder");
    let url = format!("ftp://{}/tree/", cluster.main());
    let destination = down.path().to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run_stock(
        &wget,
        &[
            "-q",
            "-r",
            "-nH",
            "--cut-dirs=1",
            "--restrict-file-names=nocontrol",
            "--tries=1",
            "--timeout=10",
            "-P",
            destination,
            &url,
        ],
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        tree(down.path()) == tree(&cluster.root.path().join("tree")),
        "wget's copy differs: {:?}",
        tree(down.path()).keys()
    );

    let source = down.path().join("with space \u{e9}t\u{e9}.txt");
    let target = format!("ftp://{}/curl%20up/new%20name.txt", cluster.main());
    let source_text = source.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) =
        run_stock(&curl, &["-sS", "--max-time", "20", "--ftp-create-dirs", "-T", source_text, &target]).await;
    assert!(ok, "{stdout}{stderr}");
    let uploaded = std::fs::read(cluster.root.path().join("curl up/new name.txt")).expect("uploaded file");
    assert_eq!(uploaded, std::fs::read(&source).expect("source"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tnftp_get_of_a_missing_file_leaves_nothing_and_sunique_stores_beside_the_old_file() {
    let Some(tnftp) = stock_client("tnftp") else { return };
    let cluster = TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await;
    cluster.write_file("up.txt", b"old\n");
    let local = tempfile::tempdir().expect("temporary folder");
    std::fs::write(local.path().join("up.txt"), "new\n").expect("write");
    let script = format!("lcd {}\nget missing.txt\nsunique\nput up.txt\nput up.txt\nbye\n", local.path().display());
    let port = cluster.main().port().to_string();
    let (ok, stdout, stderr) =
        run_stock_with_input(&tnftp, &["-n", "-v", "127.0.0.1", &port], &format!("user tnftp secret\n{script}")).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("550 /missing.txt: no such file or folder"), "{stdout}");
    assert!(!local.path().join("missing.txt").exists(), "tnftp left a local file for a missing one");
    // sunique (STOU): each upload lands under a new name beginning with the old; the file
    // already there is kept.
    let names = names_in(cluster.root.path());
    assert_eq!(names.len(), 3, "{names:?}\n{stdout}");
    assert_eq!(std::fs::read(cluster.root.path().join("up.txt")).expect("old file"), b"old\n");
    for name in names.iter().filter(|name| *name != "up.txt") {
        assert!(name.starts_with("up.txt."), "{names:?}");
        assert_eq!(std::fs::read(cluster.root.path().join(name)).expect("unique file"), b"new\n");
        assert!(stdout.contains(&format!("150 FILE: {name}")), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tnftp_in_active_mode_over_ipv6_downloads_and_lists() {
    let Some(tnftp) = stock_client("tnftp") else { return };
    let cluster = TestCluster::start_config(
        |config| config.listen("[::1]:0".parse().expect("literal")).workers(Vec::new()),
        |cluster| cluster,
    )
    .await;
    cluster.write_file("six.txt", CONTENTS);
    let local = tempfile::tempdir().expect("temporary folder");
    let script = format!("user tnftp secret\npassive off\nlcd {}\nget six.txt\nls\nbye\n", local.path().display());
    let port = cluster.main().port().to_string();
    let (ok, stdout, stderr) = run_stock_with_input(&tnftp, &["-n", "-v", "::1", &port], &script).await;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout.matches("200 EPRT command successful").count(), 2, "{stdout}");
    assert_eq!(std::fs::read(local.path().join("six.txt")).expect("downloaded"), CONTENTS);
    assert!(stdout.lines().any(|line| line.ends_with(" six.txt") && line.contains(" ftp ")), "{stdout}");
}
