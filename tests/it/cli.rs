//! The `ftpcalc server` command as a process: the table it prints, a working cluster behind
//! it, a clean exit on SIGTERM, and clear errors for bad command lines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{connect, site};

/// The binary, with its state (the default cluster secret file) in a folder of the tests'.
fn ftpcalc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftpcalc"));
    command.env("XDG_STATE_HOME", crate::support::state_folder());
    command
}

/// Starts `ftpcalc server` and reads its table of `servers` rows: (name, address, role,
/// services) per server.
fn start_server(servers: usize, args: &[&str]) -> (Child, Vec<Row>, Lines) {
    let mut child =
        ftpcalc().arg("server").args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let header = lines.next().expect("a table").expect("utf-8");
    assert!(header.starts_with("NAME"), "{header}");
    let mut table = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields[1].parse().expect("an address");
        table.push((fields[0].to_string(), address, fields[2].to_string(), fields[3..].join(" ")));
        if table.len() == servers {
            break;
        }
    }
    (child, table, lines)
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// One row of the server table: name, address, role, services.
type Row = (String, SocketAddr, String, String);

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ftpcalc did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_prints_its_table_serves_and_exits_cleanly_on_sigterm() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let root = folder.path().join("created-by-ftpcalc");
    let root_text = root.to_str().expect("utf-8 path").to_string();
    let (mut child, table, mut console) = tokio::task::spawn_blocking(move || {
        start_server(5, &["SV0", &root_text, "--listen", "127.0.0.1:0", "--grace", "1"])
    })
    .await
    .expect("started");
    let names: Vec<&str> = table.iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(names, ["SV0", "SV1", "SV2", "SV3", "SV4"]);
    assert_eq!(table[0].2, "main");
    assert!(table[1..].iter().all(|(_, address, role, _)| role == "worker" && address.ip().is_loopback()));
    let services: Vec<&str> = table[1..].iter().map(|(.., services)| services.as_str()).collect();
    assert_eq!(services, ["ADD", "SUB", "MUL", "INC"]);
    assert!(root.is_dir(), "the FTP folder is created");

    let mut ftp = connect(table[0].1).await;
    assert_eq!(site(&mut ftp, "MUL 6 7").await, (200, "42 (computed by SV3)".to_string()));
    std::fs::write(root.join("hello.txt"), b"hello").expect("write");
    let port = ftp.get_ref().await.local_addr().expect("local address").port();
    let mut stream = ftp.retr_as_stream("hello.txt").await.expect("RETR");
    let mut data = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut data).await.expect("data");
    stream.finish().await.expect("226");
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in console.by_ref() {
            let line = line.expect("utf-8");
            let done = line.starts_with('/');
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .expect("read console");
    assert!(lines[0].starts_with("open mode: no accounts are configured"), "{lines:?}");
    let secret_line = lines.iter().find(|line| line.starts_with("cluster secret in ")).expect("where the secret is");
    let path = secret_line.trim_start_matches("cluster secret in ").split(" (").next().expect("a path");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).expect("the secret file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{path}");
    let secret = std::fs::read_to_string(path).expect("read");
    assert!(lines.iter().all(|line| !line.contains(secret.trim())), "the secret never reaches stdout");
    let last = lines.last().expect("a console line");
    assert_eq!(last, &format!("/hello.txt|127.0.0.1|{port}|1"), "the download is logged on the console");
    let status = tokio::task::spawn_blocking(move || terminate(&mut child)).await.expect("terminated");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn custom_topology_from_the_command_line() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let root = folder.path().to_str().expect("utf-8 path");
    let (mut child, table, _) = start_server(
        3,
        &[
            "MAIN",
            root,
            "--listen",
            "127.0.0.1:0",
            "--worker",
            "W1=ADD+SUB@127.0.0.1:0",
            "--worker",
            "W2=MUL+INC+ADD@127.0.0.1:0",
            "--grace",
            "0.2",
        ],
    );
    let rows: Vec<(&str, &str, &str)> =
        table.iter().map(|(name, _, role, services)| (name.as_str(), role.as_str(), services.as_str())).collect();
    assert_eq!(rows[1..], [("W1", "worker", "ADD,SUB"), ("W2", "worker", "ADD,INC,MUL")]);
    assert_eq!((rows[0].0, rows[0].1), ("MAIN", "main"));
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[test]
fn bad_command_lines_get_a_clear_message_and_exit_2() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let root = folder.path().to_str().expect("utf-8 path");
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = occupied.local_addr().expect("address").to_string();
    for (args, message) in [
        (vec!["SV0", root, "--worker", "SV1"], "expected NAME=SERVICE"),
        (
            vec!["SV0", root, "--worker", "SV1=DIV@127.0.0.1:0", "--listen", "127.0.0.1:0"],
            "SV1 offers DIV, which is not a known service",
        ),
        (vec!["SV0", root, "--listen", "nowhere"], "invalid socket address"),
        (vec!["SV0", root, "--listen", &busy], "SV0 cannot listen on"),
        (vec!["S V0", root, "--listen", "127.0.0.1:0"], "cannot be a server name"),
        (vec!["SV0", root, "--listen", "127.0.0.1:0", "--worker", "SV0=ADD@127.0.0.1:0"], "two servers are called SV0"),
    ] {
        let output = ftpcalc().arg("server").args(&args).stdin(Stdio::null()).output().expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr:?} lacks {message:?}");
    }
}
