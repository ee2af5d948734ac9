//! The client's shell on a pseudo-terminal (issue 15), as a person uses it: tab completion of
//! remote names, history across two runs, and a reconnection after the server restarted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rexpect::session::PtySession;

use crate::support::TestCluster;

/// The shell `ftpcalc client CL1 FOLDER --server SERVER` on a pseudo-terminal, its history and
/// cache under `state`.
fn shell(server: SocketAddr, folder: &Path, state: &Path) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftpcalc"));
    command
        .args(["client", "CL1"])
        .arg(folder)
        .args(["--server", &server.to_string(), "--timeout", "10", "--password", "x"])
        .env("XDG_STATE_HOME", state)
        .env("XDG_CACHE_HOME", state.join("cache"))
        .env("TERM", "xterm");
    let mut session = rexpect::session::spawn_command(command, Some(20_000)).expect("spawn the shell on a pty");
    session.exp_string("CL1> ").expect("the prompt");
    session
}

/// Types `keys` and Enter.
fn enter(session: &mut PtySession, keys: &str) {
    session.send(keys).expect("type");
    session.send("\r").expect("enter");
    session.flush().expect("flush");
}

fn quit(mut session: PtySession) {
    enter(&mut session, "quit");
    session.exp_eof().expect("the shell ends");
}

/// Runs `work` (blocking pty I/O) off the runtime's threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("the pty work")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_completes_commands_and_remote_names() {
    let cluster = TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await;
    cluster.write_file("report-2026.pdf", b"the report");
    cluster.write_file("readme.txt", b"read me");
    let local = tempfile::tempdir().expect("folder");
    let state = tempfile::tempdir().expect("folder");
    let (main, folder, state_path) = (cluster.main(), local.path().to_path_buf(), state.path().to_path_buf());
    let expected: PathBuf = folder.join("report-2026.pdf");
    blocking(move || {
        let mut session = shell(main, &folder, &state_path);
        // "ge<TAB>" completes to the command, "rep<TAB>" to the one remote name it starts.
        session.send("ge\t").expect("type");
        session.send(" rep\t").expect("type");
        enter(&mut session, "");
        session.exp_string(&expected.display().to_string()).expect("downloaded under the completed name");
        quit(session);
    })
    .await;
    assert_eq!(std::fs::read(local.path().join("report-2026.pdf")).expect("read"), b"the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_across_two_runs() {
    let cluster = TestCluster::start().await;
    let local = tempfile::tempdir().expect("folder");
    let state = tempfile::tempdir().expect("folder");
    let (main, folder, state_path) = (cluster.main(), local.path().to_path_buf(), state.path().to_path_buf());
    blocking(move || {
        let mut first = shell(main, &folder, &state_path);
        enter(&mut first, "add 20 23");
        first.exp_string("43").expect("the answer");
        quit(first);
        let history = std::fs::read_to_string(state_path.join("ftpcalc/history")).expect("a history file");
        assert!(history.contains("add 20 23"), "{history}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(state_path.join("ftpcalc/history")).expect("metadata").permissions(),
        );
        assert_eq!(mode & 0o077, 0, "only its owner reads the history");
        // The second run: Up twice ("quit", then "add 20 23") and Enter.
        let mut second = shell(main, &folder, &state_path);
        second.send("\x1b[A\x1b[A").expect("up, up");
        enter(&mut second, "");
        second.exp_string("43").expect("the recalled line ran");
        quit(second);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_next_command_reconnects_and_runs_once() {
    let first = TestCluster::start().await;
    let address = first.main();
    let local = tempfile::tempdir().expect("folder");
    let state = tempfile::tempdir().expect("folder");
    let (folder, state_path) = (local.path().to_path_buf(), state.path().to_path_buf());
    let mut session = blocking(move || {
        let mut session = shell(address, &folder, &state_path);
        enter(&mut session, "add 1 2");
        session.exp_string("3").expect("the first answer");
        session
    })
    .await;
    // The cluster restarts on the same address; the shell's connection is gone.
    let TestCluster { cluster, root, .. } = first;
    cluster.shutdown().await;
    // Only the main server's address is the same: its workers take fresh ports (main port + n
    // may have been taken meanwhile by another test's connection: "Address already in use").
    let second = TestCluster::start_config(
        move |config| {
            let mut config = config.listen(address);
            for worker in &mut config.workers {
                worker.listen = Some(crate::support::loopback(0));
            }
            config
        },
        |cluster| cluster,
    )
    .await;
    assert_eq!(second.main(), address);
    drop(root);
    let printed = blocking(move || {
        enter(&mut session, "add 40 2");
        let printed = session.exp_string("42").expect("answered after reconnecting");
        quit(session);
        printed
    })
    .await;
    assert!(!printed.contains("error"), "no error for the reconnection: {printed:?}");
}
