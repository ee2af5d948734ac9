//! The `ftpcalc client` binary against a real cluster: one-shot commands, piped shells,
//! transfers with progress, no-clobber uploads, and its messages and exit codes.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{loopback, run_client, ClientRun, TestCluster};

/// Runs `ftpcalc client CL1 FOLDER --server ADDRESS ARGS...` with `input` on stdin.
async fn client(server: SocketAddr, folder: &Path, args: &[&str], input: &str) -> ClientRun {
    run_client(server, folder, args, input).await
}

#[track_caller]
fn check(run: &ClientRun, code: i32, stdout: &str) {
    assert_eq!((run.code, run.stdout.as_str()), (code, stdout), "stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_print_the_answer_alone() {
    let cluster = TestCluster::start().await;
    let folder = tempfile::tempdir().expect("temporary folder");
    let main = cluster.main();
    check(&client(main, folder.path(), &["add", "2", "3"], "").await, 0, "5\n");
    check(&client(main, folder.path(), &["sub", "2", "3", "4"], "").await, 0, "-5\n");
    check(
        &client(main, folder.path(), &["mul", "99999999999", "99999999999"], "").await,
        0,
        "9999999999800000000001\n",
    );
    check(&client(main, folder.path(), &["inc", "-1"], "").await, 0, "0\n");
    let verbose = client(main, folder.path(), &["--verbose", "add", "1", "1"], "").await;
    check(&verbose, 0, "2\n");
    assert!(verbose.stderr.contains("computed by SV1; reply: 200 2 (computed by SV1)"), "{}", verbose.stderr);

    let lookup = client(main, folder.path(), &["lookup", "mul"], "").await;
    assert_eq!(lookup.code, 0, "{}", lookup.stderr);
    assert!(lookup.stdout.contains(&format!("MUL        SV3        {}", cluster.address("SV3"))), "{}", lookup.stdout);
    let servers = client(main, folder.path(), &["servers"], "").await;
    assert_eq!(servers.code, 0);
    assert_eq!(servers.stdout.lines().count(), 6, "{}", servers.stdout);
    assert!(servers.stdout.lines().any(|line| line.split_whitespace().collect::<Vec<_>>()
        == ["SV4", &cluster.address("SV4").to_string(), "worker", "INC"]));
    let info = client(main, folder.path(), &["info"], "").await;
    assert!(info.code == 0 && info.stdout.contains("name: SV0\nrole: main\n"), "{}", info.stdout);
    let help = client(main, folder.path(), &["help"], "").await;
    assert!(help.code == 0 && help.stdout.contains("lookup SERVICE"), "{}", help.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_clear_messages_and_documented_exit_codes() {
    let cluster = TestCluster::start().await;
    let folder = tempfile::tempdir().expect("temporary folder");
    let main = cluster.main();
    let refused = client(main, folder.path(), &["add", "2", "x"], "").await;
    check(&refused, 1, "");
    assert!(
        refused.stderr.contains("add 2 x: the server said 501 operand 2 (x) is not an integer"),
        "{}",
        refused.stderr
    );
    let usage = client(main, folder.path(), &["inc"], "").await;
    check(&usage, 2, "");
    assert!(usage.stderr.contains("inc takes one integer"), "{}", usage.stderr);
    let unknown = client(main, folder.path(), &["frobnicate", "1"], "").await;
    check(&unknown, 1, "");
    assert!(unknown.stderr.contains("502"), "{}", unknown.stderr);
    let lookup = client(main, folder.path(), &["lookup", "nosuch"], "").await;
    check(&lookup, 1, "");
    assert!(lookup.stderr.contains("no server offers NOSUCH"), "{}", lookup.stderr);

    let closed = TcpListener::bind(loopback(0)).await.expect("bind");
    let nobody = closed.local_addr().expect("address");
    drop(closed);
    let unreachable = client(nobody, folder.path(), &["add", "1", "2"], "").await;
    check(&unreachable, 2, "");
    assert!(unreachable.stderr.contains(&format!("cannot talk to {nobody}")), "{}", unreachable.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piped_shell_runs_every_line_and_goes_on_after_an_error() {
    let cluster = TestCluster::start().await;
    let folder = tempfile::tempdir().expect("temporary folder");
    let input = "add 2 3\n\nmul 2 x\ninc 41\nlookup sub\nquit\nadd 9 9\n";
    let run = client(cluster.main(), folder.path(), &[], input).await;
    assert_eq!(run.code, 1, "the last failure decides the exit code: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[..2], ["5", "42"], "{}", run.stdout);
    assert!(lines[3].starts_with("SUB") && lines.len() == 4, "nothing runs after quit: {}", run.stdout);
    assert!(run.stderr.contains("error: mul 2 x: the server said 501"), "{}", run.stderr);
    let clean = client(cluster.main(), folder.path(), &[], "inc 1\ninc 2\n").await;
    check(&clean, 0, "2\n3\n");
}

fn percent_lines(stderr: &str) -> Vec<u32> {
    stderr.lines().filter_map(|line| line.strip_suffix('%')).filter_map(|number| number.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_put_move_files_of_any_size_byte_for_byte_with_progress() {
    let cluster = TestCluster::start().await;
    let local = tempfile::tempdir().expect("temporary folder");
    for (name, size) in [("zero.bin", 0usize), ("one.bin", 1), ("big.bin", 24 * 1024 * 1024 + 7)] {
        let contents: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
        std::fs::write(local.path().join(name), &contents).expect("write");
        let put = client(cluster.main(), local.path(), &["put", name], "").await;
        check(&put, 0, &format!("/{name}\n"));
        assert_eq!(percent_lines(&put.stderr).last(), Some(&100), "{}", put.stderr);
        assert!(std::fs::read(cluster.root.path().join(name)).expect("uploaded") == contents, "{name} uploaded intact");

        let down = tempfile::tempdir().expect("temporary folder");
        let get = client(cluster.main(), down.path(), &["get", name], "").await;
        check(&get, 0, &format!("{}\n", down.path().join(name).display()));
        let percents = percent_lines(&get.stderr);
        assert!(percents.windows(2).all(|pair| pair[0] < pair[1]) && percents.last() == Some(&100), "{}", get.stderr);
        assert!(std::fs::read(down.path().join(name)).expect("downloaded") == contents, "{name} downloaded intact");
        assert_eq!(crate::support::names_in(down.path()), [name], "no temporary file is left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_never_overwrites_even_when_two_clients_race() {
    let cluster = TestCluster::start().await;
    let local = tempfile::tempdir().expect("temporary folder");
    std::fs::write(local.path().join("meme.png"), b"first").expect("write");
    check(&client(cluster.main(), local.path(), &["put", "meme.png"], "").await, 0, "/meme.png\n");
    check(&client(cluster.main(), local.path(), &["put", "meme.png"], "").await, 0, "/meme_copy1.png\n");
    check(&client(cluster.main(), local.path(), &["put", "meme.png"], "").await, 0, "/meme_copy2.png\n");
    let main = cluster.main();
    let (one, two) = tokio::join!(
        client(main, local.path(), &["put", "meme.png"], ""),
        client(main, local.path(), &["put", "meme.png"], "")
    );
    assert_eq!((one.code, two.code), (0, 0), "{} {}", one.stderr, two.stderr);
    let mut names = [one.stdout.trim().to_string(), two.stdout.trim().to_string()];
    names.sort();
    assert_eq!(names, ["/meme_copy3.png", "/meme_copy4.png"]);
    for name in ["meme.png", "meme_copy1.png", "meme_copy2.png", "meme_copy3.png", "meme_copy4.png"] {
        assert_eq!(std::fs::read(cluster.root.path().join(name)).expect("stored"), b"first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_are_named_and_leave_nothing_behind() {
    let cluster = TestCluster::start().await;
    let local = tempfile::tempdir().expect("temporary folder");
    let get = client(cluster.main(), local.path(), &["get", "nothere.txt"], "").await;
    check(&get, 1, "");
    assert!(get.stderr.contains("no such remote file: nothere.txt"), "{}", get.stderr);
    assert!(crate::support::names_in(local.path()).is_empty(), "no empty file is left");
    let put = client(cluster.main(), local.path(), &["put", "absent.txt"], "").await;
    check(&put, 2, "");
    assert!(put.stderr.contains("absent.txt"), "{}", put.stderr);
    let stats = client(cluster.main(), local.path(), &["stats", "nothere.txt"], "").await;
    check(&stats, 1, "");
    assert!(stats.stderr.contains("no such file: /nothere.txt"), "{}", stats.stderr);
}

/// A scripted FTP peer for failures a real server will not produce on demand: it answers the
/// login with `login_reply`, and a download by sending 1,000 of the 1,000,000 bytes it
/// announced and then hanging up.
pub async fn scripted_server(login_reply: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(loopback(0)).await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 scripted\r\n").await;
        let mut data_listener = None;
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            let reply = match verb.as_str() {
                "USER" => "331 password please".to_string(),
                "PASS" => login_reply.to_string(),
                "TYPE" => "200 ok".to_string(),
                "SIZE" => "213 1000000".to_string(),
                "EPSV" | "PASV" => {
                    let listener = TcpListener::bind(loopback(0)).await.expect("bind data");
                    let port = listener.local_addr().expect("address").port();
                    data_listener = Some(listener);
                    if verb == "EPSV" {
                        format!("229 Entering Extended Passive Mode (|||{port}|)")
                    } else {
                        format!("227 Entering Passive Mode (127,0,0,1,{},{})", port / 256, port % 256)
                    }
                }
                "RETR" => {
                    let _ = write.write_all(b"150 here it comes\r\n").await;
                    if let Some(listener) = data_listener.take() {
                        if let Ok((mut data, _)) = listener.accept().await {
                            let _ = data.write_all(&[7; 1000]).await;
                        }
                    }
                    return;
                }
                _ => "502 not here".to_string(),
            };
            if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_and_a_dropped_transfer_end_the_client_promptly() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let refusing = scripted_server("530 not you").await;
    let login = client(refusing, folder.path(), &["add", "1", "1"], "").await;
    check(&login, 2, "");
    assert!(login.stderr.contains("refused the login as CL1: 530 not you"), "{}", login.stderr);

    let dropping = scripted_server("230 welcome").await;
    let get = client(dropping, folder.path(), &["get", "big.bin"], "").await;
    check(&get, 2, "");
    assert!(get.stderr.contains("big.bin") && get.stderr.contains("get -c big.bin continues it"), "{}", get.stderr);
    // No file under the name; the hidden partial file stays for `get -c`.
    assert_eq!(crate::support::names_in(folder.path()), [".big.bin.ftpcalc-part"]);
}
