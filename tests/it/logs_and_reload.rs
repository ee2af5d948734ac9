//! The `ftpcalc` binary as an operator runs it (issue 12): JSON log lines that carry the
//! session, plain text without colours off a terminal, and `SIGHUP` reloading the
//! configuration file while a download runs.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::{connect_as, download, eventually, site, Process, RawFtp};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits (at most 20 s) until the log at `path` contains `text`.
async fn log_shows(path: &Path, text: &str) -> bool {
    eventually(Duration::from_secs(20), async || read(path).contains(text)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_the_session_id_user_and_client() {
    let folder = tempfile::tempdir().expect("folder");
    let root = folder.path().join("ftp");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("f.txt"), "json").expect("write");
    let log = folder.path().join("log.json");
    let root_text = root.to_str().expect("utf-8 path");
    let server = Process::start_logging(
        &["server", "SV0", root_text, "--listen", "127.0.0.1:0", "--no-workers", "--log-format", "json"],
        &log,
    );
    let address = server.address_from_table();
    let mut ftp = connect_as(address, "jason", "x").await;
    assert_eq!(download(&mut ftp, "f.txt").await, b"json");
    let _ = ftp.quit().await;
    assert!(log_shows(&log, "session closed").await, "{}", read(&log));

    let lines: Vec<serde_json::Value> = read(&log)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["message"].is_string(), "{line}");
    }
    let of_session: Vec<&serde_json::Value> = lines.iter().filter(|line| line["span"]["user"] == "jason").collect();
    let messages: Vec<&str> = of_session.iter().filter_map(|line| line["message"].as_str()).collect();
    assert_eq!(messages, ["logged in", "transfer", "session closed"], "{lines:#?}");
    let id = &of_session[0]["span"]["id"];
    assert!(id.is_u64());
    for line in &of_session {
        assert_eq!(&line["span"]["id"], id, "{line}");
        assert!(line["span"]["peer"].as_str().is_some_and(|peer| peer.starts_with("127.0.0.1:")), "{line}");
    }
    let transfer = of_session[1];
    assert_eq!(
        (&transfer["path"], &transfer["bytes"], &transfer["complete"]),
        (&"/f.txt".into(), &4.into(), &true.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_off_a_terminal_have_no_colour_codes() {
    let folder = tempfile::tempdir().expect("folder");
    let log = folder.path().join("log.txt");
    let root = folder.path().join("ftp");
    let server = Process::start_logging(
        &["server", "SV0", root.to_str().expect("utf-8"), "--listen", "127.0.0.1:0", "--no-workers"],
        &log,
    );
    let address = server.address_from_table();
    let mut ftp = connect_as(address, "plain", "x").await;
    // A client names its files: one whose name would paint the operator's terminal red.
    let mut contents: &[u8] = b"red";
    ftp.put_file("evil\u{1b}[31mred.txt", &mut contents).await.expect("STOR");
    drop(ftp);
    assert!(log_shows(&log, "red.txt").await, "{}", read(&log));
    let text = read(&log);
    assert!(!text.contains('\u{1b}'), "escape codes in {text:?}");
    assert!(text.contains("session{id=") && text.contains("user=\"plain\""), "{text}");
    assert!(text.contains("path=\"/evil\\u{1b}[31mred.txt\""), "the path quoted and escaped: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_requests_are_logged_at_info_only_when_no_worker_answered() {
    let folder = tempfile::tempdir().expect("folder");
    let root = folder.path().join("ftp");
    let root = root.to_str().expect("utf-8");
    let (answered_log, lonely_log) = (folder.path().join("answered.txt"), folder.path().join("lonely.txt"));
    let server = Process::start_logging(&["server", "SV0", root, "--listen", "127.0.0.1:0"], &answered_log);
    let mut ftp = connect_as(server.address_from_table(), "counter", "x").await;
    for _ in 0..20 {
        assert_eq!(site(&mut ftp, "ADD 2 3").await.0, 200);
    }
    let _ = ftp.quit().await;
    assert!(log_shows(&answered_log, "session closed").await, "{}", read(&answered_log));
    assert!(!read(&answered_log).contains("routed"), "answered requests at info: {}", read(&answered_log));

    let lonely =
        Process::start_logging(&["server", "SV0", root, "--listen", "127.0.0.1:0", "--no-workers"], &lonely_log);
    let mut ftp = connect_as(lonely.address_from_table(), "counter", "x").await;
    assert_eq!(site(&mut ftp, "ADD 2 3").await.0, 451);
    let line = "routed service=\"ADD\" worker=\"none\" result=\"transient\"";
    assert!(log_shows(&lonely_log, line).await, "{}", read(&lonely_log));
    // In the session's span (the SITE handler enters it at each poll): who asked.
    let text = read(&lonely_log);
    let routed = text.lines().find(|logged| logged.contains(line)).expect("the line");
    assert!(routed.contains("session{id=") && routed.contains("user=\"counter\""), "{routed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_for_missing_paths_is_no_warning_on_the_console() {
    // libunftp patch 47: `SIZE`, `CWD`, `MKD`, `RMD` and `MD5` of a path the client got wrong
    // logged a WARN line (lftp's `put -c` of a new file asks `SIZE` of it): the client gets its
    // `550`, and the operator's warnings are kept for what the operator should look at.
    let folder = tempfile::tempdir().expect("folder");
    let root = folder.path().join("ftp");
    std::fs::create_dir_all(root.join("there")).expect("mkdir");
    let log = folder.path().join("log.txt");
    let root = root.to_str().expect("utf-8");
    let server = Process::start_logging(&["server", "SV0", root, "--listen", "127.0.0.1:0", "--no-workers"], &log);
    let mut raw = RawFtp::login(server.address_from_table()).await;
    for (line, code) in [
        ("SIZE nope.txt", 550),
        ("MDTM nope.txt", 550),
        ("CWD nope", 550),
        ("MKD there", 550),
        ("RMD nope", 550),
        ("DELE nope.txt", 550),
        ("RNFR nope.txt", 550),
        ("STAT nope", 550),
    ] {
        assert_eq!(raw.command(line).await.0, code, "{line}");
    }
    assert_eq!(raw.command("QUIT").await.0, 221);
    assert!(log_shows(&log, "session closed").await, "{}", read(&log));
    let text = read(&log);
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("WARN") && (line.contains("nope") || line.contains("there")))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

fn config_text(users: &[(&str, &str)], per_address: usize) -> String {
    let mut text = format!("[limits]\nmax_connections_per_ip = {per_address}\n");
    for (name, password) in users {
        let hash = ftpcalc::accounts::password::hash(password).expect("hash");
        text.push_str(&format!("\n[[users]]\nname = \"{name}\"\npassword = \"{hash}\"\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users_and_limits_for_new_sessions_while_a_download_runs() {
    let folder = tempfile::tempdir().expect("folder");
    let root = folder.path().join("ftp");
    std::fs::create_dir(&root).expect("mkdir");
    let size: u64 = 32 << 20;
    std::fs::File::create(root.join("big.bin")).and_then(|file| file.set_len(size)).expect("sparse file");
    let config = folder.path().join("ftpcalc.toml");
    std::fs::write(&config, config_text(&[("alice", "alice-password")], 10)).expect("config");
    let log = folder.path().join("log.txt");
    let server = Process::start_logging(
        &[
            "server",
            "SV0",
            root.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &log,
    );
    let address = server.address_from_table();

    // alice's download starts, and waits half-way while the configuration changes.
    let mut alice = connect_as(address, "alice", "alice-password").await;
    let mut stream = alice.retr_as_stream("big.bin").await.expect("RETR");
    let mut received = vec![0u8; 1 << 20];
    stream.read_exact(&mut received).await.expect("the first MiB");
    let mut total = received.len() as u64;

    std::fs::write(&config, config_text(&[("alice", "alice-password"), ("bob", "bob-password")], 2))
        .expect("new config");
    server.signal("HUP");
    assert!(log_shows(&log, "configuration reloaded").await, "{}", read(&log));

    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("the rest");
    total += rest.len() as u64;
    stream.finish().await.expect("226: the download survived the reload");
    assert_eq!(total, size);

    // bob is new; the per-address limit is now 2 (alice's session and bob's).
    let bob = connect_as(address, "bob", "bob-password").await;
    let (_, refused) = RawFtp::connect(address).await;
    assert_eq!(refused.0, 421, "{}", refused.1);
    assert!(refused.1.contains("(2)"), "{}", refused.1);
    drop(bob);
    let _ = alice.quit().await;

    // A broken file is refused with a message; the configuration in force stays.
    std::fs::write(&config, "[[users]\nname = ").expect("broken config");
    server.signal("HUP");
    assert!(log_shows(&log, "configuration refused").await, "{}", read(&log));
    assert!(read(&log).contains("ftpcalc.toml"), "the message names the file");
    let closed = eventually(Duration::from_secs(10), async || {
        let (mut raw, greeting) = RawFtp::connect(address).await;
        greeting.0 == 220 && raw.log_in_as("bob", "bob-password").await.0 == 230
    })
    .await;
    assert!(closed, "bob still logs in after the broken file");
}
