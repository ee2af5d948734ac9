//! The wire, command by command (issue 11): what any stock client sees from a raw control
//! connection, for each behaviour our patched libunftp fixes. Each test names the fix.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{epsv_port, in_a_big_download, loopback, names_in, sparse, RawFtp, TestCluster};

/// A cluster with no workers (the wire tests need only the main server).
async fn server() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await
}

/// [`server`] with a 4 KiB `f.bin` at its top, and a binary session on it.
async fn binary_session_with_f_bin() -> (TestCluster, RawFtp) {
    let cluster = server().await;
    cluster.write_file("f.bin", &[7u8; 4096]);
    let raw = RawFtp::login_binary(cluster.main()).await;
    (cluster, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_get_a_reply_and_the_session_goes_on() {
    // libunftp patch 2: a 501 from the line parser used to end the session.
    let cluster = server().await;
    let mut raw = RawFtp::login(cluster.main()).await;
    for line in ["NOOP x", "MODE Z", "REST -1", "STRU Q", "PASV now", "ABOR everything", "SIZE", "RNFR"] {
        let (code, text) = raw.command(line).await;
        assert!((500..600).contains(&code), "{line}: {code} {text}");
        assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on after {line:?}");
    }
    // libunftp patch 86: a NUL in a name got `451 local error`; patch 87: RFC 959's commands
    // left out got `500` like unknown ones.
    for (bytes, code) in [
        (&b"MKD x\0y\r\n"[..], 501),
        (b"STOR a\0\r\n", 501),
        (b"REIN\r\n", 502),
        (b"SMNT x\r\n", 502),
        (b"XYZZY\r\n", 500),
    ] {
        raw.send_bytes(bytes).await;
        assert_eq!(raw.reply().await.0, code, "{bytes:?}");
    }
    // libunftp patch 85: spaces after a command without arguments were an argument (`501`).
    for (line, code) in [("NOOP   ", 200), ("PWD  ", 257), ("STAT  ", 211), ("FEAT  ", 211)] {
        assert_eq!(raw.command(line).await.0, code, "{line:?}");
    }
    for bytes in [&b"NOOP \xff\xfe\r\n"[..], &b"\xff\xfeNOOP\r\n"[..]] {
        raw.send_bytes(bytes).await;
        assert_eq!(raw.reply().await.0 / 100, 5, "invalid UTF-8: {bytes:?}");
        assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on after invalid UTF-8");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stou_with_a_name_stores_under_a_unique_name_that_starts_with_it() {
    // libunftp patch 2: `STOU name` (tnftp's `sunique`) got 501 and the session was dropped.
    let cluster = server().await;
    cluster.write_file("report.txt", b"the first");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    for name in ["report.txt", ""] {
        let mut data = raw.passive(cluster.main()).await;
        let (code, text) = raw.command(format!("STOU {name}").trim_end()).await;
        assert_eq!(code, 150, "{text}");
        let stored = text.strip_prefix("150 FILE: ").unwrap_or_else(|| panic!("RFC 1123 form: {text}")).to_string();
        assert!(stored.starts_with(name) && stored != "report.txt", "{stored}");
        data.write_all(b"the second").await.expect("send");
        data.shutdown().await.expect("close");
        drop(data);
        assert_eq!(raw.reply().await.0, 226);
        assert_eq!(std::fs::read(cluster.root.path().join(&stored)).expect("stored"), b"the second");
    }
    assert_eq!(std::fs::read(cluster.root.path().join("report.txt")).expect("kept"), b"the first");
    assert_eq!(names_in(cluster.root.path()).len(), 3);
    let mut listing = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("NLST").await.0, 150);
    let mut names = String::new();
    listing.read_to_string(&mut names).await.expect("listing");
    assert_eq!(names.lines().count(), 3, "{names}");
}

/// Resident memory of process `pid` in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_without_a_line_end_neither_grow_the_server_nor_stop_others() {
    // libunftp patch 3: the control codec kept a line until its LF, however long.
    let root = tempfile::tempdir().expect("folder");
    let folder = root.path().to_str().expect("utf-8");
    let server =
        crate::support::Process::start(&[], &["server", "SV0", folder, "--listen", "127.0.0.1:0", "--no-workers"]);
    let address = server.address_from_table();
    let pid = server.child.id();
    let mut flood = RawFtp::login(address).await;
    let mut other = RawFtp::login(address).await;
    let before = resident_kib(pid);
    let chunk = vec![b'7'; 1 << 20];
    let mut peak = before;
    for megabyte in 0..50 {
        flood.send_bytes(&chunk).await;
        if megabyte % 10 == 9 {
            assert_eq!(other.command("NOOP").await.0, 200, "another client is served meanwhile");
            peak = peak.max(resident_kib(pid));
        }
    }
    let (code, text) = flood.reply().await;
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("too long"), "{text}");
    flood.send_bytes(b"\r\n").await;
    assert_eq!(flood.command("NOOP").await.0, 200, "the session goes on after the line ends");
    peak = peak.max(resident_kib(pid));
    assert!(peak < before + 8 * 1024, "the server grew from {before} KiB to {peak} KiB");
}

/// A sparse file of `size` bytes in the server's folder (reads as zeros, costs no disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_during_a_download_is_answered_426_then_226_at_once() {
    // libunftp patch 5: the session stayed locked for the whole transfer, so ABOR (and STAT)
    // got no answer until it ended.
    let cluster = server().await;
    let (mut raw, _data) = in_a_big_download(&cluster, 1 << 20).await;
    let started = std::time::Instant::now();
    assert_eq!(raw.command("ABOR").await.0, 426, "the transfer was cut short");
    assert_eq!(raw.reply().await.0, 226, "and ABOR succeeded");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered at once: {:?}", started.elapsed());
    assert_eq!(raw.command("NOOP").await.0, 200, "the session is in step");
    assert_eq!(raw.command("ABOR").await.0, 226, "ABOR with no transfer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_during_an_upload_keeps_the_old_file_whatever_the_data_connection_does_next() {
    // libunftp patch 5: ABOR during STOR followed by a normal close of the data connection
    // answered 226 and replaced the file with the partial upload.
    let cluster = server().await;
    cluster.write_file("keep.bin", b"the old contents");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("STOR keep.bin").await.0, 150);
    data.write_all(&vec![b'x'; 300_000]).await.expect("half an upload");
    data.flush().await.expect("flush");
    assert_eq!(raw.command("ABOR").await.0, 426);
    assert_eq!(raw.reply().await.0, 226);
    let _ = data.write_all(b"more").await;
    let _ = data.shutdown().await;
    drop(data);
    assert_eq!(raw.command("NOOP").await.0, 200);
    assert_eq!(std::fs::read(cluster.root.path().join("keep.bin")).expect("file"), b"the old contents");
    let clean = crate::support::eventually(std::time::Duration::from_secs(5), async || {
        names_in(cluster.root.path()) == ["keep.bin"]
    })
    .await;
    assert!(clean, "no temporary file left: {:?}", names_in(cluster.root.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_answers_during_a_transfer() {
    // libunftp patch 5: every command that locks the session waited for the transfer to end.
    let cluster = server().await;
    let (mut raw, data) = in_a_big_download(&cluster, 1 << 16).await;
    let (code, _) = raw.command("PWD").await;
    assert_eq!(code, 257, "PWD is answered while the download waits for the client");
    drop(data);
    let (code, _) = raw.reply().await;
    assert!(code == 426 || code == 226 || code == 451, "the transfer ends with a reply: {code}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ftplib_abort_and_a_telnet_synch_before_abor_work() {
    // libunftp patch 6 and SO_OOBINLINE in our listener: ftplib's `abort()` sends ABOR as urgent
    // data (its line end was lost), and BSD-style clients put IAC IP IAC DM before it (invalid
    // UTF-8, the session was closed).
    let Some(python) = crate::support::stock_client("python3") else { return };
    let cluster = server().await;
    sparse(&cluster, "big.bin", 4 << 30);
    let script = format!(
        "import ftplib\nftp = ftplib.FTP()\nftp.connect('127.0.0.1', {port})\nftp.login('a', 'b')\n\
         conn = ftp.transfercmd('RETR big.bin')\nconn.recv(65536)\nreply = ftp.abort()\nprint(reply[:3])\n\
         if reply.startswith('426'):\n    print(ftp.voidresp()[:3])\nconn.close()\nprint(ftp.pwd())\nftp.quit()\n",
        port = cluster.main().port()
    );
    let (ok, stdout, stderr) = crate::support::run_stock(&python, &["-c", &script]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.split_whitespace().collect::<Vec<_>>(), ["426", "226", "/"], "{stdout}");

    let mut raw = RawFtp::login(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("RETR big.bin").await.0, 150);
    let mut some = vec![0u8; 1 << 16];
    data.read_exact(&mut some).await.expect("some data");
    raw.send_bytes(b"\xff\xf4\xff\xf2ABOR\r\n").await;
    assert_eq!(raw.reply().await.0, 426);
    assert_eq!(raw.reply().await.0, 226);
    assert_eq!(raw.command("NOOP").await.0, 200);
}

/// Sends `command` with a data connection open and returns the replies until the final one,
/// and what came over the data connection.
async fn data_command(raw: &mut RawFtp, cluster: &TestCluster, command: &str) -> (Vec<u32>, Vec<u8>) {
    let mut data = raw.passive(cluster.main()).await;
    let (mut code, _) = raw.command(command).await;
    let mut codes = vec![code];
    let mut received = Vec::new();
    if code == 150 {
        data.read_to_end(&mut received).await.expect("data");
        code = raw.reply().await.0;
        codes.push(code);
    }
    (codes, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_path_gets_550_before_any_150_and_a_folder_is_not_a_file() {
    // libunftp patch 7: RETR, LIST, NLST and MLSD of a missing path answered 150, then 550;
    // rclone and tnftp could not tell that from a broken transfer. SIZE of a folder gave 213.
    let cluster = server().await;
    std::fs::create_dir(cluster.root.path().join("folder")).expect("mkdir");
    cluster.write_file("folder/inside.txt", b"inside");
    let mut raw = RawFtp::login(cluster.main()).await;
    for command in
        ["RETR missing.txt", "LIST missing", "NLST missing", "MLSD missing", "RETR folder", "MLSD folder/inside.txt"]
    {
        let (codes, received) = data_command(&mut raw, &cluster, command).await;
        assert_eq!(codes, [550], "{command}");
        assert!(received.is_empty());
        assert_eq!(raw.command("NOOP").await.0, 200);
    }
    let (code, text) = raw.command("SIZE folder").await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("folder"), "{text}");
    // libunftp patch 84: MDTM of a folder answered 213 with its time.
    let (code, text) = raw.command("MDTM folder").await;
    assert_eq!((code, text.as_str()), (550, "550 /folder: is a folder, not a file"));
    assert_eq!(raw.command("MDTM folder/inside.txt").await.0, 213);
    assert_eq!(raw.command("SIZE folder/inside.txt").await, (213, "213 6".to_string()));
    let (codes, received) = data_command(&mut raw, &cluster, "RETR folder/inside.txt").await;
    assert_eq!((codes, received), (vec![150, 226], b"inside".to_vec()));
    let (codes, received) = data_command(&mut raw, &cluster, "NLST folder").await;
    assert_eq!(codes, [150, 226]);
    assert!(String::from_utf8_lossy(&received).trim().ends_with("inside.txt"));
    // RFC 959: a `LIST` of a file sends that file's line (it was `550 is not a folder`).
    for path in ["folder/inside.txt", "/folder/inside.txt"] {
        let (codes, received) = data_command(&mut raw, &cluster, &format!("LIST {path}")).await;
        assert_eq!(codes, [150, 226], "LIST {path}");
        let listing = String::from_utf8_lossy(&received).into_owned();
        assert_eq!(listing.lines().count(), 1, "{listing}");
        let line = listing.trim_end();
        assert!(line.starts_with("-r") && line.contains(" 6 ") && line.ends_with(" inside.txt"), "{listing}");
    }
}

/// A server whose data connections must arrive within a second.
async fn impatient_server() -> TestCluster {
    TestCluster::start_config(
        |mut config| {
            config.options.access.limits.data_timeout = std::time::Duration::from_secs(1);
            config.workers(Vec::new())
        },
        |cluster| cluster,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_connection_that_never_arrives_ends_the_transfer_with_425() {
    // libunftp patch 8: a client that never connected left RETR without any reply.
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("EPSV").await.0, 229);
    let started = std::time::Instant::now();
    let (code, text) = raw.command("RETR f.txt").await;
    assert_eq!(code, 425, "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(raw.command("RETR f.txt").await.0, 425, "and with no data connection at all");
    assert_eq!(raw.command("NOOP").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_port_closed_for_want_of_a_command_or_by_abor_is_no_longer_reported_open() {
    // libunftp patch 33: after the passive port closed (no transfer command within the data
    // connection timeout, or ABOR), STAT still said "set up, waiting for a transfer command".
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let mut raw = RawFtp::login(cluster.main()).await;
    let data_connection = |status: &str| {
        status.lines().find(|line| line.contains("Data connection:")).unwrap_or("no such line").to_string()
    };
    assert_eq!(raw.command("EPSV").await.0, 229);
    let (code, status) = raw.command("STAT").await;
    assert_eq!(code, 211, "{status}");
    assert!(data_connection(&status).contains("waiting for a transfer command"), "{status}");
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (_, status) = raw.command("STAT").await;
    assert!(data_connection(&status).contains("none"), "the port closed after 1 s: {status}");
    assert_eq!(raw.command("RETR f.txt").await.0, 425);

    assert_eq!(raw.command("PASV").await.0, 227);
    assert_eq!(raw.command("ABOR").await.0, 226);
    let (_, status) = raw.command("STAT").await;
    assert!(data_connection(&status).contains("none"), "ABOR closed the port: {status}");
    assert_eq!(raw.command("RETR f.txt").await.0, 425);
    assert_eq!(raw.command("NOOP").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_passive_port_is_turned_away_and_the_client_still_connects() {
    // libunftp patch 8: the first connection to the passive port was taken whoever made it;
    // from another address it was closed and the client's own then found no listener. Since
    // patch 24 connections are accepted when the transfer command comes: a stranger waits in
    // the listen queue until then (or until the port closes), and is turned away at that point,
    // whether it came before the client or while the server waits for the client.
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let stranger_to = |port: u16| async move {
        let stranger = tokio::net::TcpSocket::new_v4().expect("socket");
        stranger.bind("127.0.0.2:0".parse().expect("literal")).expect("bind");
        stranger.connect(([127, 0, 0, 1], port).into()).await.expect("the stranger connects")
    };
    let turned_away = |mut stranger: tokio::net::TcpStream| async move {
        let mut nothing = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), stranger.read_to_end(&mut nothing)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    };
    let mut raw = RawFtp::login(cluster.main()).await;

    // The stranger, then the client, then the command.
    let (code, text) = raw.command("EPSV").await;
    assert_eq!(code, 229);
    let port = epsv_port(&text);
    let stranger = stranger_to(port).await;
    let mut data = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the client still connects");
    assert_eq!(raw.command("RETR f.txt").await.0, 150);
    let mut received = Vec::new();
    data.read_to_end(&mut received).await.expect("data");
    assert_eq!((raw.reply().await.0, received), (226, b"contents".to_vec()));
    assert!(turned_away(stranger).await, "the stranger's connection is closed");

    // The command, then the stranger, then the client.
    let (code, text) = raw.command("EPSV").await;
    assert_eq!(code, 229);
    let port = epsv_port(&text);
    raw.send("RETR f.txt").await;
    let stranger = stranger_to(port).await;
    assert!(turned_away(stranger).await, "the stranger's connection is closed at once");
    let mut data = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the client still connects");
    assert_eq!(raw.reply().await.0, 150);
    let mut received = Vec::new();
    data.read_to_end(&mut received).await.expect("data");
    assert_eq!((raw.reply().await.0, received), (226, b"contents".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_mode_target_that_accepts_and_closes_gets_a_final_reply() {
    // libunftp patch 8: a PORT target that closed at once left the transfer without a reply.
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let closer = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let mut raw = RawFtp::login(cluster.main()).await;
    let (code, text) = raw.command(&format!("PORT 127,0,0,1,{},{}", port >> 8, port & 255)).await;
    assert_eq!(code / 100, 2, "{text}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (mut code, text) = raw.command("RETR f.txt").await;
    if code == 150 {
        code = raw.reply().await.0;
    }
    // Small data may still fit the socket buffer before the close is noticed (226); either way
    // the transfer ends with a final reply within the bound.
    assert!([226, 425, 426, 451].contains(&code), "a final reply: {code} {text}");
    assert_eq!(raw.command("NOOP").await.0, 200);
    closer.abort();
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_unused_passive_connections_leave_no_descriptor_behind() {
    // libunftp patch 9 (and 8): every PASV/EPSV opened a listener of its own, and a data
    // connection opened and closed unused sat in CLOSE-WAIT for five minutes; ~1,000 such cycles
    // in 0.4 s used to lock everyone out of a server with 1,024 descriptors.
    let root = tempfile::tempdir().expect("folder");
    let folder = root.path().to_str().expect("utf-8");
    let server =
        crate::support::Process::start(&[], &["server", "SV0", folder, "--listen", "127.0.0.1:0", "--no-workers"]);
    let address = server.address_from_table();
    let pid = server.child.id();
    let mut raw = RawFtp::login(address).await;
    assert_eq!(raw.command("NOOP").await.0, 200);
    let before = descriptors(pid);
    let mut most = before;
    for cycle in 0..2000 {
        let command = if cycle % 2 == 0 { "EPSV" } else { "PASV" };
        let (code, text) = raw.command(command).await;
        assert!(code == 229 || code == 227, "{command}: {text}");
        let port = if code == 229 {
            epsv_port(&text)
        } else {
            let inside = text.split(['(', ')']).nth(1).expect("PASV address");
            let numbers: Vec<u16> = inside.split(',').filter_map(|number| number.trim().parse().ok()).collect();
            numbers[4] * 256 + numbers[5]
        };
        if cycle % 3 != 0 {
            // Connect and close without a command; every third listener is left unused.
            drop(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("data connection"));
        }
        if cycle % 250 == 0 {
            most = most.max(descriptors(pid));
        }
    }
    assert_eq!(raw.command("NOOP").await.0, 200);
    let settled =
        crate::support::eventually(std::time::Duration::from_secs(10), async || descriptors(pid) <= before + 2).await;
    assert!(settled, "descriptors: {before} before, {} after", descriptors(pid));
    assert!(most <= before + 20, "descriptors never pile up: at most {most}, {before} before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_and_eprt_connect_only_to_the_client_and_never_to_a_privileged_port() {
    // libunftp patch 10: PORT connected wherever it was told (RFC 2577's bounce attack, a port
    // scanner), and dropped malformed fields silently; EPRT did not exist.
    let cluster = server().await;
    cluster.write_file("f.txt", b"active");
    let mut raw = RawFtp::login(cluster.main()).await;
    let refusals = [
        ("PORT 127,0,0,2,200,10", 504, "your own address"),
        ("PORT 127,0,0,1,2,88", 504, "1024"),
        ("PORT 1,2,3,4,999,5,6", 501, "Invalid address"),
        ("PORT 127,0,0,1,200", 501, "Invalid address"),
        ("EPRT |1|10.0.0.1|6275|", 504, "your own address"),
        ("EPRT |1|127.0.0.1|21|", 504, "1024"),
        ("EPRT |3|127.0.0.1|6275|", 522, "(1,2)"),
        ("EPRT |1|not-an-address|6275|", 501, "Invalid address"),
        ("EPRT garbage", 501, "Invalid address"),
    ];
    for (line, code, reason) in refusals {
        let (got, text) = raw.command(line).await;
        assert_eq!(got, code, "{line}: {text}");
        assert!(text.contains(reason), "{line}: {text}");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (code, text) = raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await;
    assert_eq!(code, 200, "{text}");
    let (mut data, _) = listener.accept().await.expect("the server connects");
    assert_eq!(raw.command("RETR f.txt").await.0, 150);
    let mut received = Vec::new();
    data.read_to_end(&mut received).await.expect("data");
    assert_eq!((raw.reply().await.0, received), (226, b"active".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ipv6_eprt_and_epsv_work_and_pasv_says_to_use_epsv() {
    // libunftp patch 10: active mode over IPv6 was impossible (no EPRT), and PASV over IPv6
    // closed the session without a reply.
    let cluster = TestCluster::start_config(
        |config| config.listen("[::1]:0".parse().expect("literal")).workers(Vec::new()),
        |cluster| cluster,
    )
    .await;
    cluster.write_file("f.txt", b"over ipv6");
    let control = tokio::net::TcpStream::connect(cluster.main()).await.expect("connect over ::1");
    let mut raw = RawFtp::over(control).await;
    assert_eq!(raw.log_in_as("six", "six").await.0, 230);
    let (code, text) = raw.command("PASV").await;
    assert_eq!(code, 522, "{text}");
    let (code, text) = raw.command("EPSV").await;
    assert_eq!(code, 229, "{text}");
    let mut data = tokio::net::TcpStream::connect(("::1", epsv_port(&text))).await.expect("passive over ::1");
    assert_eq!(raw.command("RETR f.txt").await.0, 150);
    let mut received = Vec::new();
    data.read_to_end(&mut received).await.expect("data");
    assert_eq!((raw.reply().await.0, received), (226, b"over ipv6".to_vec()));
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    assert_eq!(raw.command(&format!("EPRT |2|::1|{port}|")).await.0, 200);
    let (mut data, _) = listener.accept().await.expect("the server connects over ::1");
    assert_eq!(raw.command("RETR f.txt").await.0, 150);
    let mut received = Vec::new();
    data.read_to_end(&mut received).await.expect("data");
    assert_eq!((raw.reply().await.0, received), (226, b"over ipv6".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_upload_whose_data_connection_closes_before_stor_is_stored() {
    // libunftp patch 9 lets go of data connections the client closed; lftp uploads an empty file
    // by connecting, closing and only then sending STOR, so the command gets a moment.
    let cluster = server().await;
    let mut raw = RawFtp::login(cluster.main()).await;
    let data = raw.passive(cluster.main()).await;
    drop(data);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(raw.command("STOR empty.txt").await.0, 150);
    assert_eq!(raw.reply().await.0, 226);
    assert_eq!(std::fs::read(cluster.root.path().join("empty.txt")).expect("stored").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mkd_quotes_its_path_and_refusals_say_what_is_wrong_without_control_characters() {
    // libunftp patch 12: `257 /newdir` was unquoted (ftplib's mkd() returned ""), MKD of an
    // existing folder and DELE of a folder both said "550 File not found".
    let cluster = server().await;
    std::fs::create_dir(cluster.root.path().join("full")).expect("mkdir");
    cluster.write_file("full/x.txt", b"x");
    let mut raw = RawFtp::login(cluster.main()).await;
    let cases: [(&str, u32, &str); 10] = [
        ("MKD new\"dir", 257, "257 \"/new\"\"dir\" created"),
        ("MKD full", 550, "550 /full: exists already"),
        ("DELE full", 550, "550 /full: is a folder"),
        ("RMD full", 550, "550 /full: folder not empty"),
        ("RMD /", 550, "550 /: the top folder cannot be removed"),
        ("DELE missing.txt", 550, "550 /missing.txt: no such file or folder"),
        ("CWD missing", 550, "550 /missing: no such"),
        ("MDTM missing.txt", 550, "550 /missing.txt: no such file or folder"),
        ("RNFR missing.txt", 550, "550 /missing.txt: no such file or folder"),
        ("PWD", 257, "257 \"/\""),
    ];
    for (line, code, text) in cases {
        let reply = raw.command(line).await;
        assert_eq!(reply.0, code, "{line}: {}", reply.1);
        assert!(reply.1.starts_with(text), "{line}: {:?} is not {text:?}", reply.1);
    }
    let (code, text) = raw.command("MKD tab\there").await;
    assert_eq!(code, 257);
    assert!(!text.contains('\t') && text.contains("tab?here"), "{text:?}");
    let (code, text) = raw.command("DELE no\u{1b}[31mfile").await;
    assert_eq!(code, 550);
    assert!(!text.chars().any(char::is_control), "{text:?}");
    if let Some(python) = crate::support::stock_client("python3") {
        let script = format!(
            "import ftplib\nftp = ftplib.FTP()\nftp.connect('127.0.0.1', {})\nftp.login('a', 'b')\nprint(ftp.mkd('made'))\n",
            cluster.main().port()
        );
        let (ok, stdout, stderr) = crate::support::run_stock(&python, &["-c", &script]).await;
        assert!(ok, "{stderr}");
        assert_eq!(stdout.trim(), "/made", "ftplib's mkd() returns the path");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfmt_sets_the_modification_time_and_feat_lists_what_works() {
    // unftp-core patch 1 and libunftp patch 13: MFMT answered 500 (rclone logged "SetModTime is
    // not supported" for every file, lftp mirrors lost times); FEAT did not list EPRT or MLST facts.
    let cluster = server().await;
    cluster.write_file("dated.txt", b"x");
    let mut raw = RawFtp::login(cluster.main()).await;
    let (code, text) = raw.command("MFMT 20200102030405 dated.txt").await;
    assert_eq!((code, text.as_str()), (213, "213 Modify=20200102030405; dated.txt"));
    assert_eq!(raw.command("MDTM dated.txt").await, (213, "213 20200102030405".to_string()));
    let modified = std::fs::metadata(cluster.root.path().join("dated.txt")).expect("file").modified().expect("mtime");
    assert_eq!(modified.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs(), 1_577_934_245);
    for (line, code) in [
        ("MFMT 2020 dated.txt", 501),
        ("MFMT 20201302030405 dated.txt", 501),
        ("MFMT 20200102030405", 501),
        ("MFMT 20200102030405 missing.txt", 550),
    ] {
        assert_eq!(raw.command(line).await.0, code, "{line}");
    }
    let (code, features) = raw.command("FEAT").await;
    assert_eq!(code, 211);
    for feature in [
        "MFMT",
        "EPRT",
        "EPSV",
        "MLST type*;size*;modify*;perm*;unique*;",
        "MLSD",
        "MDTM",
        "SIZE",
        "REST STREAM",
        "UTF8",
    ] {
        assert!(features.lines().any(|line| line.trim() == feature), "FEAT lacks {feature}: {features}");
    }
    assert!(!features.contains("AUTH TLS") && !features.contains("SITE MD5"), "only what works: {features}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlst_and_mlsd_give_type_size_modify_and_the_users_perm() {
    // unftp-core patches 2 and 3, libunftp patches 13 and 19: no perm or unique fact; MLST of a
    // relative path ignored the working folder, and its error text was "550 550 Permanent file
    // not available".
    let cluster = server().await;
    std::fs::create_dir(cluster.root.path().join("sub")).expect("mkdir");
    cluster.write_file("sub/f.txt", b"12345");
    cluster.write_file("sub/other.txt", b"12345");
    std::fs::hard_link(cluster.root.path().join("sub/f.txt"), cluster.root.path().join("sub/link.txt")).expect("link");
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("CWD sub").await.0, 250);
    let (code, text) = raw.command("MLST f.txt").await;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("type=file;size=5;modify=") && text.contains(";perm=adfrw;"), "{text}");
    let unique = |text: &str| -> String {
        let fact = text.split(';').find_map(|fact| fact.trim().strip_prefix("unique=")).expect("a unique fact");
        fact.to_string()
    };
    let of_file = unique(&text);
    assert_eq!(unique(&raw.command("MLST link.txt").await.1), of_file, "two names of one file");
    assert_ne!(unique(&raw.command("MLST other.txt").await.1), of_file, "two files");
    let (code, text) = raw.command("MLST missing.txt").await;
    assert_eq!((code, text.as_str()), (550, "550 /sub/missing.txt: no such file or folder"));
    let (codes, listing) = data_command(&mut raw, &cluster, "MLSD /").await;
    assert_eq!(codes, [150, 226]);
    let listing = String::from_utf8_lossy(&listing);
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with("type=dir;") && line.contains("perm=cdeflmp;") && line.ends_with(" sub")),
        "{listing}"
    );
    assert!(listing.lines().all(|line| line.contains(";unique=")), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opts_mlst_chooses_the_facts_that_mlst_and_mlsd_give_and_feat_marks_them() {
    // libunftp patch 45: `OPTS MLST type;size;` (lftp sends it at every login) was answered
    // `501 Invalid Parameter`, and every fact was given whatever the client asked (RFC 3659 §7.9).
    let cluster = server().await;
    cluster.write_file("f.txt", b"12345");
    let mut raw = RawFtp::login(cluster.main()).await;
    let mlst_line = |text: &str| text.lines().nth(1).expect("the entry line").to_string();
    assert!(raw.command("FEAT").await.1.contains(" MLST type*;size*;modify*;perm*;unique*;"));
    assert_eq!(
        raw.command("OPTS MLST SIZE;type;lang;").await,
        (200, "200 MLST OPTS type;size;".into()),
        "unknown facts left out"
    );
    assert_eq!(mlst_line(&raw.command("MLST f.txt").await.1), " type=file;size=5; /f.txt");
    assert!(raw.command("FEAT").await.1.contains(" MLST type*;size*;modify;perm;unique;"));
    let (codes, listing) = data_command(&mut raw, &cluster, "MLSD").await;
    assert_eq!(codes, [150, 226]);
    assert_eq!(String::from_utf8_lossy(&listing), "type=file;size=5; f.txt\r\n");
    // No fact at all: the entries are the names alone.
    assert_eq!(raw.command("OPTS MLST").await, (200, "200 MLST OPTS".into()));
    assert_eq!(mlst_line(&raw.command("MLST f.txt").await.1), "  /f.txt");
    assert_eq!(raw.command("OPTS mlst modify;perm;unique;").await, (200, "200 MLST OPTS modify;perm;unique;".into()));
    let entry = mlst_line(&raw.command("MLST f.txt").await.1);
    assert!(
        entry.starts_with(" modify=") && entry.contains(";perm=adfrw;unique=") && !entry.contains("size="),
        "{entry}"
    );
    // A list with a space in it is not one; the choice stays.
    assert_eq!(raw.command("OPTS MLST type; size;").await.0, 501);
    assert!(raw.command("FEAT").await.1.contains(" MLST type;size;modify*;perm*;unique*;"));
    // In active mode the data connection is made at `EPRT`: a choice made after it counts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200);
    let (mut data, _) = listener.accept().await.expect("the server connects");
    assert_eq!(raw.command("OPTS MLST size;").await, (200, "200 MLST OPTS size;".into()));
    assert_eq!(raw.command("MLSD").await.0, 150);
    let mut listing = Vec::new();
    data.read_to_end(&mut listing).await.expect("the listing");
    assert_eq!(raw.reply().await.0, 226);
    assert_eq!(String::from_utf8_lossy(&listing), "size=5; f.txt\r\n");
    // Another session gets every fact.
    let mut other = RawFtp::login(cluster.main()).await;
    assert!(mlst_line(&other.command("MLST f.txt").await.1).starts_with(" type=file;size=5;modify="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_the_commands_and_stat_tells_the_session_or_lists_a_path() {
    // libunftp patch 14: HELP listed nothing; STAT printed internal type names
    // (`libunftp::auth::anonymous::AnonymousAuthenticator`), and STAT PATH ignored the working
    // folder, could not show a file, and answered 451 for a missing path.
    let cluster = TestCluster::start().await;
    std::fs::create_dir(cluster.root.path().join("sub")).expect("mkdir");
    cluster.write_file("sub/f.txt", b"12345");
    let mut raw = RawFtp::login(cluster.main()).await;
    let (code, help) = raw.command("HELP").await;
    assert_eq!(code, 214);
    for command in ["RETR", "STOR", "EPRT", "MFMT", "MLSD", "SITE", "FEAT"] {
        assert!(help.split_whitespace().any(|word| word == command), "HELP lacks {command}: {help}");
    }
    assert!(help.contains("SITE commands:") && help.contains(" ADD ") && help.contains(" LOOKUP "), "{help}");
    let (code, status) = raw.command("STAT").await;
    assert_eq!(code, 211);
    assert!(status.contains("Logged in as: raw") && status.contains("Data connection: none"), "{status}");
    assert!(!status.contains("::") && !status.contains("Authenticator"), "no internal type names: {status}");
    assert_eq!(raw.command("CWD sub").await.0, 250);
    let (code, text) = raw.command("STAT f.txt").await;
    assert_eq!(code, 213, "{text}");
    assert!(text.contains("Status of /sub/f.txt:") && text.contains("f.txt"), "{text}");
    let (code, text) = raw.command("STAT .").await;
    assert_eq!(code, 212, "{text}");
    assert!(text.lines().any(|line| line.ends_with("f.txt")), "{text}");
    assert_eq!(raw.command("STAT missing").await, (550, "550 /sub/missing: no such file or folder".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_ftp_as_owner_and_group_and_sorts_by_name() {
    // ftpcalc's FtpBackend::list_fmt: libunftp printed the uid and gid in 12-wide columns, in
    // directory order.
    let cluster = server().await;
    for name in ["zebra.txt", "apple.txt", "Mango.txt"] {
        cluster.write_file(name, b"fruit");
    }
    std::fs::create_dir(cluster.root.path().join("basket")).expect("mkdir");
    let mut raw = RawFtp::login(cluster.main()).await;
    let (codes, listing) = data_command(&mut raw, &cluster, "LIST").await;
    assert_eq!(codes, [150, 226]);
    let listing = String::from_utf8_lossy(&listing);
    let names: Vec<&str> = listing.lines().map(|line| line.rsplit(' ').next().unwrap_or_default()).collect();
    assert_eq!(names, ["Mango.txt", "apple.txt", "basket", "zebra.txt"], "{listing}");
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((fields[2], fields[3]), ("ftp", "ftp"), "{line}");
        assert!(line.starts_with('-') || line.starts_with('d'), "{line}");
    }
    let (codes, names) = data_command(&mut raw, &cluster, "NLST").await;
    assert_eq!(codes, [150, 226]);
    assert_eq!(
        String::from_utf8_lossy(&names).lines().collect::<Vec<_>>(),
        ["Mango.txt", "apple.txt", "basket", "zebra.txt"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasv_announces_the_passive_host_when_one_is_set() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.passive_host = Some("203.0.113.7".into());
            config.workers(Vec::new())
        },
        |cluster| cluster,
    )
    .await;
    let mut raw = RawFtp::login(cluster.main()).await;
    let (code, text) = raw.command("PASV").await;
    assert_eq!(code, 227);
    assert!(text.contains("(203,0,113,7,"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_get_the_replies_of_one_by_one_in_order_and_others_are_served_meanwhile() {
    // libunftp patch 37: commands answered from a task of their own (MKD, CWD, RMD, SIZE, PASS…)
    // let the next command run first, so a pipelining client got replies out of order, and
    // `MKD a` + `CWD a` sent together failed. A pipelining client must see exactly the replies
    // it would get one command at a time, and must not hold up other sessions.
    let cluster = server().await;
    let script = ["PWD", "MKD pipe", "CWD pipe", "PWD", "MODE Z", "NOOP", "CWD /", "RMD pipe", "TYPE I", "SIZE gone"];
    let mut one_by_one = RawFtp::login(cluster.main()).await;
    let mut expected = Vec::new();
    for line in script {
        expected.push(one_by_one.command(line).await);
    }
    assert!(expected.iter().any(|(code, _)| *code >= 500), "the script has refusals too: {expected:?}");
    let rounds = 200;
    let (mut pipelined, greeting) = RawFtp::connect(cluster.main()).await;
    assert_eq!(greeting.0, 220);
    let mut bytes = b"USER raw\r\nPASS raw\r\n".to_vec();
    for _ in 0..rounds {
        for line in script {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
    }
    pipelined.send_bytes(&bytes).await;
    assert_eq!(one_by_one.command("NOOP").await.0, 200, "another session is served meanwhile");
    assert_eq!(pipelined.reply().await.0, 331);
    assert_eq!(pipelined.reply().await.0, 230, "logged in before the next command runs");
    for round in 0..rounds {
        for (line, want) in script.iter().zip(&expected) {
            assert_eq!(&pipelined.reply().await, want, "round {round}, {line}");
        }
    }
    assert_eq!(pipelined.command("QUIT").await.0, 221);
    assert!(pipelined.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_dot_dot_goes_to_the_parent_by_name_and_keeps_working_after_the_folder_is_gone() {
    // libunftp patch 38: `CWD ..` kept `/a/..` as the working folder: `PWD` showed it, and once
    // `a` was removed every relative path through it failed.
    let cluster = server().await;
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("MKD a").await.0, 257);
    assert_eq!(raw.command("MKD a/b").await.0, 257);
    assert_eq!(raw.command("CWD a/./b").await.0, 250);
    assert_eq!(raw.command("PWD").await, (257, "257 \"/a/b\"".into()));
    assert_eq!(raw.command("CWD ../..").await.0, 250);
    assert_eq!(raw.command("PWD").await, (257, "257 \"/\"".into()));
    assert_eq!(raw.command("CWD a").await.0, 250);
    assert_eq!(raw.command("CWD ..").await.0, 250);
    assert_eq!(raw.command("RMD a/b").await.0, 250);
    assert_eq!(raw.command("RMD a").await.0, 250);
    assert_eq!(raw.command("PWD").await, (257, "257 \"/\"".into()));
    assert_eq!(raw.command("MKD c").await.0, 257, "relative paths still work");
    assert_eq!(raw.command("CWD ../../..").await.0, 250, "above the top is the top");
    assert_eq!(raw.command("PWD").await, (257, "257 \"/\"".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_ending_meanwhile_lets_no_pipelined_command_overtake_the_one_before() {
    // libunftp patch 42: after a command answered from a task of its own (`MKD` here), the
    // next pipelined command waits for that answer (patch 37); a message of a transfer running
    // meanwhile (its `150` or `226`) used to end the wait, so `CWD` ran before `MKD` had made
    // the folder. The transfer's `226` may come anywhere among the others, but the others must
    // be those of one command at a time, in order. (Since patch 44 `MKD` waits for the `150`;
    // the `226` can still come while `MKD` is under way.)
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    for round in 0..300 {
        let port = raw.passive_port().await;
        // The data connection comes after the commands: the transfer's `226` can then come
        // while `MKD` is under way.
        raw.send_bytes(format!("RETR f.bin\r\nMKD d{round}\r\nCWD d{round}\r\nPWD\r\nCWD /\r\n").as_bytes()).await;
        let mut data = tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.expect("data connection");
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).await.expect("the file");
        assert_eq!(bytes.len(), 4096, "round {round}");
        let mut others = Vec::new();
        let mut transfer = Vec::new();
        for _ in 0..6 {
            let (code, text) = raw.reply().await;
            match code {
                150 | 226 => transfer.push(code),
                _ => others.push((code, text)),
            }
        }
        assert_eq!(transfer, [150, 226], "round {round}: {others:?}");
        let codes: Vec<u32> = others.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, [257, 250, 257, 250], "round {round}: {others:?}");
        assert_eq!(others[2].1, format!("257 \"/d{round}\""), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_right_behind_a_transfer_command_answers_that_command() {
    // libunftp patch 43: `RETR` and `ABOR` arriving together, before the passive port's task had
    // taken the `RETR`, left `RETR` unanswered: the task picked the abort at random over the
    // command it had (or, not started yet, found its channels cleared by `ABOR`), and answered
    // only `226 no transfer to abort`. The `RETR` is now the transfer `ABOR` cuts short.
    let (_cluster, mut raw) = binary_session_with_f_bin().await;
    for round in 0..40 {
        // Half the rounds wait for `EPSV`'s reply (the port's task is running), half send all
        // three commands in one write (the task has not started when `ABOR` comes).
        if round % 2 == 0 {
            raw.passive_port().await;
            raw.send_bytes(b"RETR f.bin\r\nABOR\r\n").await;
        } else {
            raw.send_bytes(b"EPSV\r\nRETR f.bin\r\nABOR\r\n").await;
            assert_eq!(raw.reply().await.0, 229, "round {round}");
        }
        let replies = raw.codes::<2>().await;
        assert_eq!(replies, [426, 226], "round {round}: the RETR is cut short, then ABOR succeeds");
        assert_eq!(raw.command("NOOP").await.0, 200, "round {round}: the session is in step");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_then_a_new_active_data_connection_in_one_write_both_get_their_reply() {
    // libunftp patch 48: in active mode the data connection waits for its command; `ABOR` and a
    // new `EPRT` sent together could close the waiting connection's command channel before it
    // saw the abort (patch 43's `biased` wait made that certain), and `ABOR` went unanswered.
    let cluster = server().await;
    cluster.write_file("f.txt", b"active");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    for round in 0..20 {
        assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200, "round {round}");
        let (_first, _) = listener.accept().await.expect("the server connects");
        raw.send_bytes(format!("ABOR\r\nEPRT |1|127.0.0.1|{port}|\r\n").as_bytes()).await;
        let (mut data, _) = listener.accept().await.expect("the server connects again");
        assert_eq!(raw.codes::<2>().await, [226, 200], "round {round}: ABOR, then EPRT");
        assert_eq!(raw.command("RETR f.txt").await.0, 150, "round {round}");
        let mut received = Vec::new();
        data.read_to_end(&mut received).await.expect("data");
        assert_eq!((raw.reply().await.0, received), (226, b"active".to_vec()), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_pipelined_behind_a_transfer_command_is_answered_after_the_transfer_starts() {
    // libunftp patch 44: `RETR`, `LIST`, `NLST` and `MLSD` are answered by the data channel
    // (`150` once there is something to send, patch 7), and the loop read on meanwhile: `RETR f`
    // + `NOOP` in one write, the data connection made after it, answered `NOOP` first. The next
    // command now waits for the transfer's first reply (`ABOR`, `STAT` and `QUIT` do not wait:
    // `abor_right_behind_a_transfer_command_answers_that_command`).
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    for (round, transfer) in
        ["RETR f.bin", "LIST", "NLST", "MLSD", "RETR missing.bin"].iter().cycle().take(100).enumerate()
    {
        let port = raw.passive_port().await;
        raw.send_bytes(format!("{transfer}\r\nNOOP\r\nPWD\r\n").as_bytes()).await;
        let mut data = tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.expect("data connection");
        let first = raw.reply().await;
        let mut bytes = Vec::new();
        if transfer.contains("missing") {
            // Nothing to send: the data connection is closed (or reset) unused.
            let _ = data.read_to_end(&mut bytes).await;
            assert_eq!(first.0, 550, "round {round}, {transfer}: {first:?}");
            assert_eq!(raw.reply().await.0, 200, "round {round}");
            assert_eq!(raw.reply().await.0, 257, "round {round}");
            continue;
        }
        assert_eq!(first.0, 150, "round {round}, {transfer}: {first:?}");
        data.read_to_end(&mut bytes).await.expect("the data");
        let mut rest: Vec<u32> = Vec::new();
        for _ in 0..3 {
            rest.push(raw.reply().await.0);
        }
        // The transfer's `226` may come before or between the others (the control connection
        // stays open during a transfer), and they keep their order.
        let others: Vec<u32> = rest.iter().copied().filter(|code| *code != 226).collect();
        assert_eq!(others, [200, 257], "round {round}, {transfer}: {rest:?}");
        assert!(rest.contains(&226), "round {round}, {transfer}: {rest:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_behind_a_transfer_whose_data_connection_never_comes_runs_after_its_425() {
    // libunftp patch 44: the command held behind a transfer command runs once that command is
    // answered, whatever the answer (here `425` after the data connection timeout).
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let mut raw = RawFtp::login(cluster.main()).await;
    raw.passive_port().await;
    raw.send_bytes(b"RETR f.txt\r\nNOOP\r\nPWD\r\n").await;
    let replies = raw.codes::<3>().await;
    assert_eq!(replies, [425, 200, 257]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_an_earlier_transfer_does_not_release_a_command_held_behind_the_next() {
    // libunftp patch 49: a command held behind a transfer command (patch 44) ran when *any*
    // message of the data channel came, so the `226` of a download still under way let `NOOP`
    // overtake the next transfer's `150`: `RETR big` running, then `EPSV`, then `RETR f` +
    // `NOOP` in one write, answered `226` (big), `200`, `150`. The data channel's messages now
    // carry the number of their transfer command. (Since patch 63 the `EPSV` itself waits for
    // the download's end, so the next transfer no longer starts beside it.)
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    sparse(&cluster, "big.bin", 16 << 20);
    for (round, next) in ["RETR f.bin", "LIST", "MLSD"].iter().cycle().take(12).enumerate() {
        let mut big = raw.passive(cluster.main()).await;
        assert_eq!(raw.command("RETR big.bin").await.0, 150, "round {round}");
        // The download waits for the client to read; meanwhile the next transfer is asked for
        // (its `EPSV` waits for the download's end since patch 63), and a command behind it.
        raw.send_bytes(format!("EPSV\r\n{next}\r\nNOOP\r\n").as_bytes()).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut bytes = Vec::new();
        big.read_to_end(&mut bytes).await.expect("the big file");
        assert_eq!(bytes.len(), 16 << 20, "round {round}");
        assert_eq!(raw.reply().await.0, 226, "round {round}: the big download ends");
        let (code, text) = raw.reply().await;
        assert_eq!(code, 229, "round {round}: then the EPSV is answered: {text}");
        let port = epsv_port(&text);
        let mut data = tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.expect("data connection");
        let mut listing = Vec::new();
        data.read_to_end(&mut listing).await.expect("the data");
        let replies = raw.codes::<3>().await;
        assert_eq!(replies[0], 150, "round {round}, {next}: {replies:?}");
        assert!(replies[1..].contains(&200) && replies[1..].contains(&226), "round {round}, {next}: {replies:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_after_commands_held_behind_a_starting_transfer_is_answered_at_once() {
    // libunftp patch 51: while commands waited behind a transfer command for its first reply
    // (patch 44), nothing more was read, so an `ABOR` sent after them waited for the data
    // connection timeout (30 s here) before it could cut the transfer short. The held commands
    // now sit in a bounded queue while reading goes on; `ABOR` acts at once, the others (`STAT`
    // and `QUIT` too) keep their turn.
    let (_cluster, mut raw) = binary_session_with_f_bin().await;
    for round in 0..10 {
        raw.passive_port().await;
        // No data connection comes: the transfer waits for it.
        raw.send_bytes(b"RETR f.bin\r\nTYPE A\r\nSTAT\r\nTYPE I\r\n").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        raw.send_bytes(b"ABOR\r\n").await;
        let replies = raw.codes::<5>().await;
        assert_eq!(replies, [426, 226, 200, 211, 200], "round {round}: RETR cut short, ABOR, then the held commands");
    }
    raw.passive_port().await;
    raw.send_bytes(b"RETR f.bin\r\nNOOP\r\nQUIT\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    raw.send_bytes(b"ABOR\r\n").await;
    let replies = raw.codes::<4>().await;
    assert_eq!(replies, [426, 226, 200, 221], "QUIT waits its turn behind NOOP");
    assert!(raw.closed().await, "and then the session ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_commands_behind_a_starting_transfer_are_all_answered_in_order() {
    // libunftp patch 51: the queue of commands held behind a starting transfer is bounded
    // (32); the rest wait unread in the socket. None is lost or reordered.
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    let port = raw.passive_port().await;
    let mut burst = b"RETR f.bin\r\n".to_vec();
    for index in 0..5000 {
        burst.extend_from_slice(if index % 2 == 0 { b"NOOP\r\n" } else { b"PWD\r\n" });
    }
    raw.send_bytes(&burst).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut data = tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.expect("data connection");
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).await.expect("the file");
    assert_eq!(bytes.len(), 4096);
    assert_eq!(raw.reply().await.0, 150, "the transfer's first reply comes first");
    let mut codes = Vec::new();
    for _ in 0..5001 {
        codes.push(raw.reply().await.0);
    }
    // The transfer's `226` comes once, anywhere among them.
    assert_eq!(codes.iter().filter(|code| **code == 226).count(), 1);
    codes.retain(|code| *code != 226);
    let expected: Vec<u32> = (0..5000).map(|index| if index % 2 == 0 { 200 } else { 257 }).collect();
    assert!(codes == expected, "every held command answered once, in order");
    assert_eq!(raw.command("NOOP").await.0, 200, "and the session is in step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_after_a_refused_transfer_command_is_answered_and_the_session_goes_on() {
    // Patch 49 as first written numbered a transfer command even when its handler refused it
    // (`LIST` with no data connection: `425`), and then waited for a message about that number
    // after `ABOR` of the transfer still running: `NOOP` waited for the data connection
    // timeout. The data channel's messages now carry the number of the command they are about,
    // and after `ABOR` the loop waits for `ABOR`'s own answer.
    let cluster = server().await;
    let (mut raw, _big) = in_a_big_download(&cluster, 1 << 16).await;
    assert_eq!(raw.command("LIST").await.0, 425, "no data connection for a second transfer");
    raw.send_bytes(b"ABOR\r\nNOOP\r\n").await;
    let replies = raw.codes::<3>().await;
    assert_eq!(replies, [426, 226, 200], "the download is cut short, ABOR succeeds, NOOP is answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_behind_held_commands_still_gets_every_reply() {
    // Patch 51 as first written took the end of the client's input as the client leaving, at
    // once, even with commands held behind a starting transfer: a client that sends `RETR`,
    // `NOOP` and `QUIT` and then closes its sending side (as `nc -N` does) lost every reply
    // after `RETR`'s. The end of input now waits its turn behind them.
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    let port = raw.passive_port().await;
    raw.send_bytes(b"RETR f.bin\r\nNOOP\r\nQUIT\r\n").await;
    raw.finish_sending().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut data = tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.expect("data connection");
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).await.expect("the file");
    assert_eq!(bytes.len(), 4096);
    let codes = raw.codes::<4>().await;
    // The transfer's `226` may come anywhere after its `150`; the others keep their order.
    let others: Vec<u32> = codes.iter().copied().filter(|code| *code != 226).collect();
    assert_eq!((others, codes.contains(&226)), (vec![150, 200, 221], true), "{codes:?}");
    assert!(raw.closed().await, "and then the session ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_right_behind_an_upload_command_cuts_that_upload_short() {
    // libunftp patch 53: `STOR`, `APPE` and `STOU` handed their command to the data channel
    // from a task of their own, so an `ABOR` right behind one (in the same write) could reach
    // the passive port's task first: it answered `226 no transfer to abort`, the upload command
    // never got its final reply, and nothing was uploaded or refused. Like `RETR` (patch 43),
    // they now hand it over before the handler returns, and `ABOR` cuts the upload short.
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    for (round, command) in ["STOR up.bin", "APPE f.bin", "STOU"].iter().cycle().take(30).enumerate() {
        raw.passive_port().await;
        raw.send_bytes(format!("{command}\r\nABOR\r\n").as_bytes()).await;
        let replies = raw.codes::<3>().await;
        assert_eq!(replies, [150, 426, 226], "round {round}, {command}: the upload is cut short, then ABOR succeeds");
        assert_eq!(raw.command("NOOP").await.0, 200, "round {round}: the session is in step");
    }
    assert_eq!(names_in(cluster.root.path()), ["f.bin"], "no upload was committed");
    assert_eq!(std::fs::read(cluster.root.path().join("f.bin")).expect("f.bin").len(), 4096, "nothing appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_as_a_data_connection_gives_up_are_all_answered() {
    // libunftp patch 55: a passive port (or an active data connection) that gave up, its data
    // connection timeout over, dropped its channels unread: a transfer command or an `ABOR`
    // sent just then (the handler found the channel still open) went unanswered, and the loop
    // held the next command for the timeout and more. The channels are now closed first and
    // what reached them answered (`425`, `226`). Many sessions send right around the 1-second
    // timeout, a few milliseconds apart; whatever side of it each lands on, each command gets
    // its one reply, in order.
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let mut sessions = tokio::task::JoinSet::new();
    for index in 0..24u64 {
        let address = cluster.main();
        sessions.spawn(async move {
            let mut raw = RawFtp::login(address).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("address").port();
            let around = std::time::Duration::from_millis(985 + index * 30 / 24);
            for (round, (setup, commands, expected)) in [
                ("EPSV", "RETR f.txt\r\nNOOP\r\n", vec![425, 200]),
                ("EPSV", "ABOR\r\nNOOP\r\n", vec![226, 200]),
                ("EPRT", "RETR f.txt\r\nNOOP\r\n", vec![425, 200]),
            ]
            .into_iter()
            .enumerate()
            {
                let connection = if setup == "EPSV" {
                    raw.passive_port().await;
                    None
                } else {
                    assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200);
                    Some(listener.accept().await.expect("the server connects").0)
                };
                tokio::time::sleep(around).await;
                raw.send_bytes(commands.as_bytes()).await;
                // A `RETR` that came in time waits for a data connection that never comes
                // (passive: `425` a second later) or runs on the one there (active: `150`,
                // `226`); one that came late gets `425` at once.
                let mut replies = vec![raw.reply().await.0];
                if replies[0] == 150 {
                    replies.push(raw.reply().await.0);
                }
                replies.push(raw.reply().await.0);
                let in_time = setup == "EPRT" && replies == [150, 226, 200];
                assert!(in_time || replies == expected, "session {index}, round {round}, {commands:?}: {replies:?}");
                drop(connection);
            }
            assert_eq!(raw.command("NOOP").await.0, 200, "session {index}: in step");
            1
        });
    }
    assert_eq!(crate::support::sum_of(sessions, std::time::Duration::from_secs(60)).await, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_during_a_download_waits_for_its_end_then_answers_221() {
    // libunftp patch 58: `QUIT` during a transfer answered `221` and closed the control
    // connection at once; the download went on, but its `226` (or its error) never reached the
    // client, which could not tell a complete file from a cut one. RFC 959: the connection stays
    // open for the transfer's reply, then the server closes it (as vsftpd does).
    let cluster = server().await;
    let contents: Vec<u8> = (0..8u32 << 20).map(|index| (index % 251) as u8).collect();
    cluster.write_file("mid.bin", &contents);
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("RETR mid.bin").await.0, 150);
    let mut received = vec![0u8; 64 << 10];
    data.read_exact(&mut received).await.expect("the first bytes");
    raw.send("QUIT").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    data.read_to_end(&mut received).await.expect("the rest");
    assert!(received == contents, "the whole file: {} of {} bytes", received.len(), contents.len());
    assert_eq!(raw.codes::<2>().await, [226, 221], "the download's reply, then QUIT's");
    assert!(raw.closed().await, "and then the session ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_during_an_upload_waits_for_the_upload_to_be_stored() {
    // libunftp patch 58, for uploads: the `226` that says the file is stored comes before `221`.
    let cluster = server().await;
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("STOR up.bin").await.0, 150);
    let contents: Vec<u8> = (0..2u32 << 20).map(|index| (index % 241) as u8).collect();
    data.write_all(&contents[..1 << 20]).await.expect("half the upload");
    raw.send("QUIT").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    data.write_all(&contents[1 << 20..]).await.expect("the other half");
    data.shutdown().await.expect("end of the upload");
    assert_eq!(raw.codes::<2>().await, [226, 221], "the upload's reply, then QUIT's");
    assert!(raw.closed().await, "and then the session ends");
    assert!(std::fs::read(cluster.root.path().join("up.bin")).expect("stored") == contents, "the whole upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_pipelined_behind_a_transfer_command_or_abor_comes_last() {
    // libunftp patch 58: `QUIT` in the same write as `RETR` (or behind `ABOR`) is answered after
    // the transfer's replies (and ABOR's), not before them.
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    let port = raw.passive_port().await;
    raw.send_bytes(b"RETR f.bin\r\nQUIT\r\n").await;
    let mut data = tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.expect("data connection");
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).await.expect("the file");
    assert_eq!(bytes.len(), 4096);
    assert_eq!(raw.codes::<3>().await, [150, 226, 221]);
    assert!(raw.closed().await);

    let (mut raw, _data) = in_a_big_download(&cluster, 1 << 16).await;
    raw.send_bytes(b"ABOR\r\nQUIT\r\n").await;
    assert_eq!(raw.codes::<3>().await, [426, 226, 221], "the download cut short, ABOR's reply, then QUIT's");
    assert!(raw.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_after_a_refused_transfer_is_answered_at_once_and_one_waiting_for_a_data_connection_after_its_425() {
    // libunftp patch 58: only a transfer under way holds `QUIT` back; a refused one does not,
    // and one whose data connection never comes ends with its `425`, then `221`.
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("RETR f.txt").await.0, 425, "no PASV, EPSV or PORT before it");
    let started = std::time::Instant::now();
    assert_eq!(raw.command("QUIT").await.0, 221);
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "at once: {:?}", started.elapsed());
    assert!(raw.closed().await);

    let mut raw = RawFtp::login(cluster.main()).await;
    raw.passive_port().await;
    raw.send_bytes(b"RETR f.txt\r\nQUIT\r\n").await;
    assert_eq!(raw.codes::<2>().await, [425, 221], "no data connection within the second, then QUIT's reply");
    assert!(raw.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_sent_as_a_transfer_gives_up_is_answered_after_the_transfers_reply() {
    // libunftp patch 60: a passive port giving up (no data connection within the timeout)
    // queues its `425` for the control loop; an `ABOR` read just then could be answered first
    // (`226` written by its handler, or picked before the waiting message), so the client got
    // `226` then `425`, the reverse of its commands. Messages already waiting now come before
    // commands, and `ABOR`'s `226` is queued behind them. Many sessions send `ABOR` right
    // around the 1-second timeout; each gets `RETR`'s reply (`426` or `425`), then `226`.
    let cluster = impatient_server().await;
    cluster.write_file("f.txt", b"contents");
    let mut sessions = tokio::task::JoinSet::new();
    for index in 0..24u64 {
        let address = cluster.main();
        sessions.spawn(async move {
            let mut raw = RawFtp::login(address).await;
            for round in 0..3u64 {
                raw.passive_port().await;
                raw.send("RETR f.txt").await;
                tokio::time::sleep(std::time::Duration::from_millis(990 + (index * 3 + round) * 20 / 72)).await;
                raw.send("ABOR").await;
                let replies = raw.codes::<2>().await;
                assert!(replies == [426, 226] || replies == [425, 226], "session {index}, round {round}: {replies:?}");
                assert_eq!(raw.command("NOOP").await.0, 200, "session {index}, round {round}: in step");
            }
            1
        });
    }
    assert_eq!(crate::support::sum_of(sessions, std::time::Duration::from_secs(60)).await, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_abor_waits_for_the_first_ones_answer() {
    // Review of patches 58 and 60: a second `ABOR` behind one the data channel had still to
    // answer found no data connection and was answered first (`226`, then the transfer's
    // `426` and the first ABOR's `226`); since patch 60 its `226` even ended the wait for the
    // first ABOR's answer, so a `QUIT` behind them was answered before the transfer's reply. It
    // now waits its turn behind the first ABOR's answer.
    let cluster = server().await;
    for (next, reply) in [("QUIT", 221), ("PWD", 257)] {
        let (mut raw, _data) = in_a_big_download(&cluster, 1 << 16).await;
        raw.send_bytes(format!("ABOR\r\nABOR\r\n{next}\r\n").as_bytes()).await;
        assert_eq!(raw.codes::<4>().await, [426, 226, 226, reply], "ABOR, ABOR, {next}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epsv_pipelined_behind_an_upload_waits_for_the_uploads_final_reply() {
    // libunftp patch 63: `STOR` answers its own `150`, so an `EPSV` pipelined right behind it
    // was handled at once: it closed the passive port whose task had not yet taken the upload
    // command, and the upload never got a final reply (nor its data stored). As in vsftpd and
    // pure-ftpd, a command that sets up a data connection now waits for the final reply of the
    // transfer under way. Rounds in a row, since the loss depended on the tasks' timing.
    let cluster = impatient_server().await;
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    for round in 0..20 {
        let mut data = raw.passive(cluster.main()).await;
        let name = format!("up{round}.bin");
        raw.send_bytes(format!("STOR {name}\r\nEPSV\r\n").as_bytes()).await;
        assert_eq!(raw.reply().await.0, 150, "round {round}");
        let contents = format!("round {round}");
        data.write_all(contents.as_bytes()).await.expect("upload");
        drop(data);
        assert_eq!(raw.reply().await.0, 226, "round {round}: the upload's final reply comes first");
        let (code, text) = raw.reply().await;
        assert_eq!(code, 229, "round {round}: then the EPSV's: {text}");
        assert_eq!(std::fs::read(cluster.root.path().join(&name)).expect("stored"), contents.as_bytes());
        // The new port serves the next transfer.
        let mut next = tokio::net::TcpStream::connect(loopback(epsv_port(&text))).await.expect("connect");
        assert_eq!(raw.command("RETR up0.bin").await.0, 150, "round {round}");
        let mut got = Vec::new();
        next.read_to_end(&mut got).await.expect("download");
        assert_eq!((raw.reply().await.0, got.as_slice()), (226, &b"round 0"[..]), "round {round}");
    }
    // An upload whose data connection never comes: `425` after the data connection timeout
    // (1 s), then the `EPSV`, then `QUIT`.
    raw.passive_port().await;
    let started = std::time::Instant::now();
    raw.send_bytes(b"STOR never.bin\r\nEPSV\r\nQUIT\r\n").await;
    assert_eq!(raw.codes::<4>().await, [150, 425, 229, 221]);
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "answered after {:?}", started.elapsed());
    assert!(raw.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasv_during_a_download_waits_for_its_end_so_that_abor_still_reaches_the_transfer() {
    // libunftp patch 63: a `PASV` (or `PORT`) during a transfer took the session's abort
    // channel for its new port, so a later `ABOR` answered `226` ("no transfer") while the
    // download ran on. It now waits for the transfer's final reply: `ABOR` cuts the transfer
    // short (`426`, `226`), then the `PASV` is answered.
    let cluster = TestCluster::start().await;
    // Where `PORT` and `EPRT` ask the server to connect.
    let active = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = active.local_addr().expect("address").port();
    let port_command = format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff);
    let eprt_command = format!("EPRT |1|127.0.0.1|{port}|");
    for (command, reply) in [("PASV", 227), ("EPSV", 229), (port_command.as_str(), 200), (eprt_command.as_str(), 200)] {
        let (mut raw, data) = in_a_big_download(&cluster, 64 * 1024).await;
        raw.send(command).await;
        // Sent apart, so that the command is read while the transfer runs.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        raw.send("ABOR").await;
        assert_eq!(
            raw.codes::<3>().await,
            [426, 226, reply],
            "{command}: ABOR reached the transfer, then the command ran"
        );
        drop(data);
        assert_eq!(raw.command("NOOP").await.0, 200, "{command}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_or_download_whose_data_connection_was_reset_ends_with_426() {
    // libunftp patch 64: `MLSD` answered a data connection the client had reset with `450
    // Failed to write file` (a file error, as if the server's storage had failed), where
    // `LIST`, `NLST` and `RETR` answer `426` (connection closed; transfer aborted).
    let (cluster, mut raw) = binary_session_with_f_bin().await;
    for command in ["MLSD", "LIST", "NLST", "RETR f.bin"] {
        for round in 0..5 {
            let data = raw.passive(cluster.main()).await;
            #[allow(deprecated)] // SO_LINGER 0 makes close() send a reset at once; nothing blocks.
            data.set_linger(Some(std::time::Duration::ZERO)).expect("linger");
            drop(data);
            raw.send(command).await;
            let codes = raw.codes::<2>().await;
            assert_eq!(codes, [150, 426], "{command}, round {round}");
            assert_eq!(raw.command("NOOP").await.0, 200, "{command}: the session goes on");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_are_refused_and_never_replace_another_file() {
    // libunftp patch 79: `caf\xe9.txt` and `caf\xe8.txt` (Latin-1) both became
    // `caf\u{fffd}.txt`, so the second `STOR` replaced the first one's file, and a `DELE` of
    // one name removed the other's file.
    let cluster = server().await;
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    for name in [&b"caf\xe9.txt"[..], b"caf\xe8.txt"] {
        let data = raw.passive(cluster.main()).await;
        let mut line = b"STOR ".to_vec();
        line.extend_from_slice(name);
        line.extend_from_slice(b"\r\n");
        raw.send_bytes(&line).await;
        let (code, text) = raw.reply().await;
        assert_eq!((code, text.contains("UTF8")), (500, true), "{text}");
        drop(data);
    }
    for line in [&b"MKD bad\xff\xfe\r\n"[..], b"DELE caf\xe9.txt\r\n", b"RNFR caf\xe9.txt\r\n", b"RETR caf\xe8.txt\r\n"]
    {
        raw.send_bytes(line).await;
        let (code, text) = raw.reply().await;
        assert_eq!(code, 500, "{}: {text}", String::from_utf8_lossy(line));
    }
    assert_eq!(names_in(cluster.root.path()), Vec::<String>::new(), "nothing was stored or made");

    // A name in UTF-8 is stored as it was.
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("STOR café.txt").await.0, 150);
    data.write_all(b"first").await.expect("send");
    data.shutdown().await.expect("close");
    drop(data);
    assert_eq!(raw.reply().await.0, 226);
    assert_eq!(std::fs::read(cluster.root.path().join("café.txt")).expect("stored"), b"first");
    assert_eq!(raw.command("NOOP").await.0, 200);

    // A file made on the disk under a name that is not UTF-8 is listed with U+FFFD (NLST wrote
    // an empty line for it).
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"raw\xe9.txt");
    std::fs::write(cluster.root.path().join(odd), b"odd").expect("write");
    for command in ["NLST", "LIST"] {
        let (codes, received) = data_command(&mut raw, &cluster, command).await;
        assert_eq!(codes, [150, 226], "{command}");
        let listing = String::from_utf8(received).expect("UTF-8");
        assert_eq!(listing.lines().count(), 2, "{command}: {listing:?}");
        assert!(listing.lines().all(|line| !line.is_empty()), "{command}: {listing:?}");
        assert!(listing.contains("raw\u{fffd}.txt") && listing.contains("café.txt"), "{command}: {listing:?}");
    }

    // A name with a line end in it is one line in NLST, as in LIST (it made two lines, the second
    // naming a file that is not there).
    std::fs::write(cluster.root.path().join("two\nlines.txt"), b"x").expect("write");
    for command in ["NLST", "LIST"] {
        let (_, received) = data_command(&mut raw, &cluster, command).await;
        let listing = String::from_utf8(received).expect("UTF-8");
        assert_eq!(listing.lines().count(), 3, "{command}: {listing:?}");
        assert!(listing.contains("two?lines.txt"), "{command}: {listing:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rnto_without_a_pending_rnfr_is_out_of_sequence() {
    // libunftp patch 80: it got `450`, a transient error a client may retry as it is.
    let cluster = server().await;
    cluster.write_file("a.txt", b"a");
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("RNTO b.txt").await.0, 503);
    assert_eq!(raw.command("RNFR missing.txt").await.0, 550);
    assert_eq!(raw.command("RNTO b.txt").await.0, 503, "a refused RNFR leaves nothing to rename");
    assert_eq!(raw.command("RNFR a.txt").await.0, 350);
    assert_eq!(raw.command("RNTO b.txt").await.0, 250);
    assert_eq!(raw.command("RNTO c.txt").await.0, 503, "one RNFR, one RNTO");
    assert_eq!(names_in(cluster.root.path()), ["b.txt"]);

    // libunftp patch 88: RNFR must be followed immediately by RNTO (RFC 959); a command or a
    // line that does not parse between them ends the rename (the later RNTO renamed the file).
    for between in ["NOOP", "RNTO", "RNFR", "PWD"] {
        assert_eq!(raw.command("RNFR b.txt").await.0, 350);
        assert!(raw.command(between).await.0 < 600);
        assert_eq!(raw.command("RNTO moved.txt").await.0, 503, "after {between}");
    }
    assert_eq!(names_in(cluster.root.path()), ["b.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x_variants_of_the_folder_commands_work() {
    // libunftp patch 81: XRMD and XCUP got `500` while XMKD, XCWD and XPWD worked.
    let cluster = server().await;
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("XMKD made").await.0, 257);
    assert_eq!(raw.command("XCWD made").await.0, 250);
    assert!(raw.command("XPWD").await.1.contains("\"/made\""));
    assert_eq!(raw.command("XCUP").await.0 / 100, 2);
    assert!(raw.command("XPWD").await.1.contains("\"/\""));
    assert_eq!(raw.command("XRMD made").await.0, 250);
    assert_eq!(names_in(cluster.root.path()), Vec::<String>::new());
    let (code, help) = raw.command("HELP").await;
    assert!(code == 214 && help.contains("XRMD") && help.contains("XCUP"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epsv_names_its_network_protocol_and_epsv_all_leaves_only_epsv() {
    // libunftp patch 82 (RFC 2428): the argument of EPSV was ignored: `EPSV 2` answered `229`
    // for IPv4, and `EPSV ALL` opened a port while PASV, PORT and EPRT went on working.
    let cluster = server().await;
    cluster.write_file("f.txt", b"contents");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let (code, text) = raw.command("EPSV 2").await;
    assert_eq!((code, text.as_str()), (522, "522 Network protocol not supported, use (1)"));
    assert_eq!(raw.command("EPSV 7").await.0, 522);
    assert_eq!(raw.command("EPSV foo").await.0, 501);
    assert_eq!(raw.command("EPSV 1").await.0, 229);
    assert_eq!(raw.command("PASV").await.0, 227, "PASV still works before EPSV ALL");

    assert_eq!(raw.command("EPSV ALL").await.0, 200);
    for line in ["PASV", "PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|51210|"] {
        let (code, text) = raw.command(line).await;
        assert_eq!((code, text.as_str()), (550, "550 EPSV ALL is in effect: use EPSV"), "{line}");
    }
    // (`data_command` sets up its data connection with EPSV.)
    assert_eq!(data_command(&mut raw, &cluster, "RETR f.txt").await, (vec![150, 226], b"contents".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_refuses_the_types_it_does_not_serve() {
    // libunftp patch 83: `TYPE E` and `TYPE X` were answered `200` as if served.
    let cluster = server().await;
    let mut raw = RawFtp::login(cluster.main()).await;
    for line in ["TYPE A", "TYPE I", "TYPE A N", "TYPE L 8", "type i"] {
        assert_eq!(raw.command(line).await.0, 200, "{line}");
    }
    for line in ["TYPE E", "TYPE X", "TYPE A T", "TYPE L 7"] {
        assert_eq!(raw.command(line).await.0, 504, "{line}");
    }
    assert_eq!(raw.command("TYPE").await.0, 501);
    assert_eq!(raw.command("NOOP").await.0, 200);
}
