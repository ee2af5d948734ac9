//! The file service: download counters under concurrency, atomic and no-clobber uploads,
//! uploads cut off half-way, resume, confinement.

use std::collections::BTreeSet;
use std::time::Duration;

use suppaftp::tokio::AsyncFtpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{connect, download, names_in, site, RawFtp, TestCluster};

/// `size` bytes that differ from one `seed` to another.
fn payload(seed: u8, size: usize) -> Vec<u8> {
    (0..size).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn upload(ftp: &mut AsyncFtpStream, name: &str, data: &[u8]) {
    ftp.put_file(name, &mut &data[..]).await.unwrap_or_else(|error| panic!("STOR {name}: {error}"));
}

/// No temporary upload file anywhere in `folder` (one level).
fn no_temporaries(folder: &std::path::Path) -> bool {
    names_in(folder).iter().all(|name| !name.starts_with(ftpcalc::ftp_backend::upload::TEMP_PREFIX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_downloads_are_counted_exactly_and_logged_with_client_ports() {
    let cluster = TestCluster::start().await;
    let contents = payload(7, 256 * 1024);
    cluster.write_file("shared.bin", &contents);
    let servers: Vec<_> = cluster.cluster.servers().iter().map(|server| server.address).collect();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..32 {
        let server = servers[client % servers.len()];
        let expected = contents.clone();
        clients.spawn(async move {
            let mut ftp = connect(server).await;
            let port = ftp.get_ref().await.local_addr().expect("local address").port();
            assert!(download(&mut ftp, "shared.bin").await == expected, "client {client} got other bytes");
            port
        });
    }
    let mut ports = BTreeSet::new();
    while let Some(port) = clients.join_next().await {
        ports.insert(port.expect("client task"));
    }
    let log = cluster.download_log.lock().expect("log").clone();
    assert_eq!(log.len(), 32, "{log:?}");
    let mut counts = BTreeSet::new();
    let mut logged_ports = BTreeSet::new();
    for line in &log {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!((fields.len(), fields[0], fields[1]), (4, "/shared.bin", "127.0.0.1"), "{line}");
        logged_ports.insert(fields[2].parse::<u16>().expect("a port"));
        counts.insert(fields[3].parse::<u64>().expect("a count"));
    }
    assert_eq!(logged_ports, ports, "the log names each client's control connection port");
    assert_eq!(counts, (1..=32).collect(), "each download has its own count");
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "STATS shared.bin").await, (200, "/shared.bin 32".to_string()));
    assert_eq!(site(&mut ftp, "STATS /shared.bin").await, (200, "/shared.bin 32".to_string()));
    let (code, all) = site(&mut ftp, "STATS").await;
    assert!(code == 200 && all.contains(" /shared.bin 32") && all.contains("1 files downloaded"), "{all}");
    let (code, text) = site(&mut ftp, "STATS never-there.txt").await;
    assert_eq!((code, text.as_str()), (550, "no such file: /never-there.txt"));
    cluster.write_file("fresh.txt", b"x");
    assert_eq!(site(&mut ftp, "STATS fresh.txt").await, (200, "/fresh.txt 0".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_no_clobber_uploads_of_one_name_give_sixteen_intact_files() {
    let cluster = TestCluster::start().await;
    cluster.write_file("meme.png", b"the original");
    let main = cluster.main();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..16u8 {
        clients.spawn(async move {
            let mut ftp = connect(main).await;
            assert_eq!(site(&mut ftp, "NOCLOBBER ON").await, (200, "no-clobber uploads on".to_string()));
            let data = payload(client, 100_000 + usize::from(client));
            upload(&mut ftp, "meme.png", &data).await;
            let (code, stored) = site(&mut ftp, "STORED").await;
            assert_eq!(code, 200, "{stored}");
            (stored, data)
        });
    }
    let mut stored_names = BTreeSet::new();
    while let Some(result) = clients.join_next().await {
        let (stored, data) = result.expect("client task");
        let name = stored.trim_start_matches('/').to_string();
        assert!(std::fs::read(cluster.root.path().join(&name)).expect("stored file") == data, "{name} is not intact");
        assert!(stored_names.insert(name), "two uploads got the name {stored}");
    }
    let expected: BTreeSet<String> = (1..=16).map(|copy| format!("meme_copy{copy}.png")).collect();
    assert_eq!(stored_names, expected);
    assert_eq!(std::fs::read(cluster.root.path().join("meme.png")).expect("original"), b"the original");
    assert!(no_temporaries(cluster.root.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stor_replaces_by_default_and_noclobber_is_per_session() {
    let cluster = TestCluster::start().await;
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "STORED").await, (550, "nothing stored in this session yet".to_string()));
    assert_eq!(site(&mut ftp, "NOCLOBBER").await, (200, "no-clobber uploads off".to_string()));
    upload(&mut ftp, "a.txt", b"one").await;
    upload(&mut ftp, "a.txt", b"two").await;
    assert_eq!(site(&mut ftp, "STORED").await, (200, "/a.txt".to_string()));
    assert_eq!(std::fs::read(cluster.root.path().join("a.txt")).expect("file"), b"two");
    assert_eq!(site(&mut ftp, "NOCLOBBER on").await.0, 200);
    upload(&mut ftp, "a.txt", b"three").await;
    assert_eq!(site(&mut ftp, "STORED").await, (200, "/a_copy1.txt".to_string()));
    let mut other = connect(cluster.main()).await;
    upload(&mut other, "a.txt", b"four").await;
    assert_eq!(site(&mut other, "STORED").await, (200, "/a.txt".to_string()), "another session still replaces");
    let (code, text) = site(&mut ftp, "NOCLOBBER maybe").await;
    assert_eq!(code, 501, "{text}");
    ftp.mkdir("sub").await.expect("MKD");
    upload(&mut ftp, "sub/b", b"1").await;
    upload(&mut ftp, "/sub/b", b"2").await;
    assert_eq!(site(&mut ftp, "STORED").await, (200, "/sub/b_copy1".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_can_make_every_upload_no_clobber() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.no_clobber = true;
            config
        },
        |cluster| cluster,
    )
    .await;
    cluster.write_file("x.txt", b"old");
    let mut ftp = connect(cluster.address("SV2")).await;
    upload(&mut ftp, "x.txt", b"new").await;
    assert_eq!(site(&mut ftp, "STORED").await, (200, "/x_copy1.txt".to_string()));
    assert_eq!(std::fs::read(cluster.root.path().join("x.txt")).expect("file"), b"old");
}

/// Starts `STOR name` on a raw connection and sends `half` of the data.
async fn start_upload(cluster: &TestCluster, name: &str, half: &[u8]) -> (RawFtp, tokio::net::TcpStream) {
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    let (code, text) = raw.command(&format!("STOR {name}")).await;
    assert_eq!(code, 150, "{text}");
    data.write_all(half).await.expect("send half");
    data.flush().await.expect("flush");
    (raw, data)
}

/// Waits (at most 10 s) until no temporary upload file is left in the FTP folder.
async fn temporaries_gone(cluster: &TestCluster) -> bool {
    for _ in 0..200 {
        if no_temporaries(cluster.root.path()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reset_half_way_leaves_the_old_file_and_no_temporary() {
    let cluster = TestCluster::start().await;
    cluster.write_file("target.bin", b"the old contents");
    let (mut raw, data) = start_upload(&cluster, "target.bin", &payload(1, 300_000)).await;
    #[allow(deprecated)] // SO_LINGER 0 makes close() send a reset at once; nothing blocks.
    data.set_linger(Some(Duration::ZERO)).expect("linger");
    drop(data);
    let (code, text) = raw.reply().await;
    assert!((400..600).contains(&code), "the cut-off upload is not reported as done: {code} {text}");
    assert!(temporaries_gone(&cluster).await, "temporary file left: {:?}", names_in(cluster.root.path()));
    assert_eq!(std::fs::read(cluster.root.path().join("target.bin")).expect("file"), b"the old contents");
    assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on");
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(ftp.nlst(None).await.expect("NLST"), ["target.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_control_connection_dies_leaves_the_old_file_and_no_temporary() {
    let cluster = TestCluster::start().await;
    cluster.write_file("target.bin", b"the old contents");
    let (raw, mut data) = start_upload(&cluster, "target.bin", &payload(2, 300_000)).await;
    drop(raw);
    // The data connection then breaks too, as it does when a client process is killed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = data.write_all(&payload(3, 1000)).await;
    #[allow(deprecated)]
    data.set_linger(Some(Duration::ZERO)).expect("linger");
    drop(data);
    assert!(temporaries_gone(&cluster).await, "temporary file left: {:?}", names_in(cluster.root.path()));
    assert_eq!(std::fs::read(cluster.root.path().join("target.bin")).expect("file"), b"the old contents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_resume_with_rest() {
    let cluster = TestCluster::start().await;
    let contents = payload(9, 1_000_003);
    cluster.write_file("big.bin", &contents);
    let half = contents.len() / 2;
    let mut first = connect(cluster.main()).await;
    let mut stream = first.retr_as_stream("big.bin").await.expect("RETR");
    let mut head = vec![0; half];
    stream.read_exact(&mut head).await.expect("first half");
    drop(stream);
    drop(first);
    let mut second = connect(cluster.main()).await;
    second.resume_transfer(half).await.expect("REST");
    let tail = download(&mut second, "big.bin").await;
    head.extend(tail);
    assert!(head == contents, "resumed download differs");
}

/// `REST` applies to the next transfer command only, whether it succeeds or not: a `RETR` that
/// failed (the file was gone) or a listing used to leave the offset for the next download,
/// which then came short of its first bytes with a `226`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_offset_is_used_by_the_next_transfer_command_only() {
    let cluster = TestCluster::start().await;
    let contents = payload(5, 4_096);
    cluster.write_file("whole.bin", &contents);
    let mut ftp = connect(cluster.main()).await;
    ftp.resume_transfer(100).await.expect("REST");
    let Err(missing) = ftp.retr_as_stream("missing.bin").await else { panic!("RETR of a missing file succeeded") };
    assert!(missing.to_string().contains("550"), "{missing}");
    assert!(download(&mut ftp, "whole.bin").await == contents, "the download after a failed one kept its offset");

    ftp.resume_transfer(100).await.expect("REST");
    ftp.nlst(None).await.expect("NLST");
    assert!(download(&mut ftp, "whole.bin").await == contents, "the download after a listing kept its offset");

    ftp.resume_transfer(100).await.expect("REST");
    assert!(download(&mut ftp, "whole.bin").await == contents[100..], "REST then RETR starts at the offset");
    assert!(download(&mut ftp, "whole.bin").await == contents, "the next RETR starts at 0 again");
}

/// A `REST` offset past the end of the file refuses the `STOR` and says why (it said "no such
/// file or folder", of a file that was there); the file keeps its contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_upload_past_the_end_of_the_file_is_refused_and_says_why() {
    let cluster = TestCluster::start().await;
    cluster.write_file("ten.bin", b"0123456789");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    assert_eq!(raw.command("REST 12").await.0, 350);
    let mut data = raw.passive(cluster.main()).await;
    let (code, text) = raw.command("STOR ten.bin").await;
    let (code, text) = if code == 150 {
        data.write_all(b"more").await.expect("send");
        data.shutdown().await.expect("close");
        drop(data);
        raw.reply().await
    } else {
        (code, text)
    };
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("estart offset 12 is beyond the end of the file (10 bytes)"), "{text}");
    assert_eq!(std::fs::read(cluster.root.path().join("ten.bin")).expect("kept"), b"0123456789");
    assert!(no_temporaries(cluster.root.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_resume_with_rest_and_appe() {
    let cluster = TestCluster::start().await;
    let contents = payload(4, 777_777);
    let (head, tail) = contents.split_at(300_000);
    let mut ftp = connect(cluster.main()).await;
    upload(&mut ftp, "resumed.bin", head).await;
    assert_eq!(ftp.size("resumed.bin").await.expect("SIZE"), head.len());
    ftp.resume_transfer(head.len()).await.expect("REST");
    upload(&mut ftp, "resumed.bin", tail).await;
    assert!(std::fs::read(cluster.root.path().join("resumed.bin")).expect("file") == contents);
    assert_eq!(ftp.size("resumed.bin").await.expect("SIZE"), contents.len());
    ftp.mdtm("resumed.bin").await.expect("MDTM");

    upload(&mut ftp, "appended.bin", head).await;
    ftp.append_file("appended.bin", &mut &tail[..]).await.expect("APPE");
    assert!(std::fs::read(cluster.root.path().join("appended.bin")).expect("file") == contents);
    assert_eq!(ftp.size("appended.bin").await.expect("SIZE"), contents.len());
    assert!(no_temporaries(cluster.root.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_uploads_continue_the_same_file_under_no_clobber() {
    // Issue 9: REST + STOR and APPE under SITE NOCLOBBER ON stored NAME_copy1 and left the
    // original unchanged.
    let cluster = TestCluster::start().await;
    let contents = payload(5, 500_001);
    let (head, rest) = contents.split_at(200_000);
    let (middle, tail) = rest.split_at(100_000);
    let mut ftp = connect(cluster.main()).await;
    assert_eq!(site(&mut ftp, "NOCLOBBER ON").await.0, 200);
    upload(&mut ftp, "grow.bin", head).await;
    ftp.resume_transfer(head.len()).await.expect("REST");
    upload(&mut ftp, "grow.bin", middle).await;
    assert_eq!(site(&mut ftp, "STORED").await, (200, "/grow.bin".to_string()));
    ftp.append_file("grow.bin", &mut &tail[..]).await.expect("APPE");
    assert_eq!(site(&mut ftp, "STORED").await, (200, "/grow.bin".to_string()));
    assert!(std::fs::read(cluster.root.path().join("grow.bin")).expect("file") == contents);
    assert_eq!(names_in(cluster.root.path()), ["grow.bin"], "no copy was made");
    upload(&mut ftp, "grow.bin", b"new").await;
    assert_eq!(
        site(&mut ftp, "STORED").await,
        (200, "/grow_copy1.bin".to_string()),
        "a fresh STOR still never replaces"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temporary_files_are_removed_at_start_and_never_listed() {
    let root = tempfile::tempdir().expect("temporary folder");
    let prefix = ftpcalc::ftp_backend::upload::TEMP_PREFIX;
    std::fs::create_dir(root.path().join("sub")).expect("mkdir");
    std::fs::write(root.path().join(format!("{prefix}crashed.1")), b"half").expect("write");
    std::fs::write(root.path().join(format!("sub/{prefix}crashed.2")), b"half").expect("write");
    std::fs::write(root.path().join("kept.txt"), b"kept").expect("write");
    let config = crate::support::test_config(root.path());
    let cluster = ftpcalc::Cluster::new(config).start().await.expect("starts");
    assert_eq!(names_in(root.path()), ["kept.txt", "sub"]);
    assert!(names_in(&root.path().join("sub")).is_empty());
    // One that appears while the server runs (an upload under way) is hidden from every command.
    std::fs::write(root.path().join(format!("{prefix}live.3")), b"in flight").expect("write");
    let mut ftp = connect(cluster.main_address()).await;
    assert_eq!(ftp.nlst(None).await.expect("NLST"), ["kept.txt", "sub"]);
    let listing = ftp.list(None).await.expect("LIST");
    assert!(listing.iter().all(|line| !line.contains(prefix)), "{listing:?}");
    let mut raw = RawFtp::login(cluster.main_address()).await;
    for command in [format!("SIZE {prefix}live.3"), format!("MDTM {prefix}live.3"), format!("DELE {prefix}live.3")] {
        assert_eq!(raw.command(&command).await.0, 550, "{command}");
    }
    assert!(root.path().join(format!("{prefix}live.3")).exists());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passive_ports_flag_is_honoured() {
    let root = tempfile::tempdir().expect("temporary folder");
    std::fs::write(root.path().join("p.txt"), b"passive").expect("write");
    let folder = root.path().to_str().expect("utf-8 path");
    let args = ["server", "SV0", folder, "--listen", "127.0.0.1:0", "--no-workers", "--passive-ports", "47100-47149"];
    let server = crate::support::Process::start(&[], &args);
    let address = server.address_from_table();
    let in_range = |port: u16| (47_100..=47_149).contains(&port);
    let mut raw = RawFtp::login(address).await;
    for _ in 0..5 {
        let (code, text) = raw.command("EPSV").await;
        assert_eq!(code, 229, "{text}");
        let port = text.rsplit("|||").next().and_then(|rest| rest.split('|').next()).and_then(|port| port.parse().ok());
        assert!(port.is_some_and(in_range), "EPSV: {text}");
        let (code, text) = raw.command("PASV").await;
        assert_eq!(code, 227, "{text}");
        let inside = text.split(['(', ')']).nth(1).unwrap_or_default();
        let numbers: Vec<u16> = inside.split(',').filter_map(|number| number.trim().parse().ok()).collect();
        assert!(numbers.len() == 6 && in_range(numbers[4] * 256 + numbers[5]), "PASV: {text}");
    }
    let mut ftp = connect(address).await;
    assert_eq!(download(&mut ftp, "p.txt").await, b"passive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_go_on_when_nobody_reads_the_console() {
    // Issue 9: the download log line was written to stdout in the transfer's path, so a full
    // pipe (64 KiB: about 2,400 lines) stopped every download.
    use std::io::BufRead;
    let root = tempfile::tempdir().expect("temporary folder");
    std::fs::write(root.path().join("s.txt"), b"small").expect("write");
    let folder = root.path().to_str().expect("utf-8 path");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_ftpcalc"))
        .args(["server", "SV0", folder, "--listen", "127.0.0.1:0", "--no-workers"])
        .env("XDG_STATE_HOME", crate::support::state_folder())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = std::io::BufReader::new(server.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut address = None;
    while address.is_none() && stdout.read_line(&mut line).expect("table") > 0 {
        address = line.split_whitespace().nth(1).and_then(|address| address.parse::<std::net::SocketAddr>().ok());
        line.clear();
    }
    let address = address.expect("the main server's address");
    // From here on nobody reads the server's stdout.
    let mut raw = RawFtp::login_binary(address).await;
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..3000 {
            let mut data = raw.passive(address).await;
            assert_eq!(raw.command("RETR s.txt").await.0, 150);
            let mut contents = Vec::new();
            data.read_to_end(&mut contents).await.expect("data");
            assert_eq!(contents, b"small");
            assert_eq!(raw.reply().await.0, 226);
        }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    drop(stdout);
    assert!(all.is_ok(), "3,000 downloads finished although stdout was not read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_and_paths_outside_the_folder_are_refused() {
    let cluster = TestCluster::start().await;
    let outside = tempfile::tempdir().expect("temporary folder");
    std::fs::write(outside.path().join("secret.txt"), b"secret").expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), cluster.root.path().join("link.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink(outside.path(), cluster.root.path().join("linkdir")).expect("symlink");
    let mut raw = RawFtp::login(cluster.main()).await;
    for name in
        ["missing.txt", "../../etc/passwd", "/etc/passwd", "/../../../../etc/passwd", "link.txt", "linkdir/secret.txt"]
    {
        let data = raw.passive(cluster.main()).await;
        let (code, text) = raw.command(&format!("RETR {name}")).await;
        let final_code = if code == 150 { raw.reply().await.0 } else { code };
        assert_eq!(final_code, 550, "RETR {name}: {text}");
        drop(data);
    }
    let (code, text) = raw.command("CWD linkdir").await;
    assert_eq!(code, 550, "CWD through a symlink out of the folder: {text}");
    let (code, text) = raw.command("CWD ../..").await;
    assert!(code == 550 || code / 100 == 2, "CWD above the root is refused or stays at the root: {text}");
    assert!(raw.command("PWD").await.1.contains("\"/\""));
    let (code, text) = raw.command(&format!("SIZE {}", ftpcalc::ftp_backend::upload::TEMP_PREFIX)).await;
    assert_eq!(code, 550, "temporary names are unreachable: {text}");
    assert_eq!(cluster.download_log.lock().expect("log").len(), 0, "no refused download is counted");
}
