//! `ftpcalc bench` against a real cluster: it must report exactly what it did.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::TestCluster;

async fn bench(server: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ftpcalc"))
        .args(["bench", "--server", &server.to_string()])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("bench ends").expect("bench runs");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_mode_counts_requests_and_errors_exactly() {
    let cluster = TestCluster::start().await;
    let (code, stdout, stderr) =
        bench(cluster.main(), &["cmd", "--command", "SITE ADD 2 3", "-c", "8", "-n", "300", "-d", "30"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("command \"SITE ADD 2 3\": 8 connections"), "{stdout}");
    assert!(stdout.contains("requests 300, errors 0,"), "{stdout}");
    assert!(stdout.contains("latency p50 "), "{stdout}");
    let (code, stdout, _) = bench(cluster.main(), &["cmd", "--command", "SITE ADD 2 x", "-c", "2", "-n", "50"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("requests 50, errors 50,"), "refusals count as errors: {stdout}");
    let (code, stdout, _) = bench(cluster.main(), &["cmd", "-c", "4", "-n", "1000000", "-d", "0.3"]).await;
    assert_eq!(code, 0);
    let requests: u64 = stdout
        .split("requests ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|count| count.parse().ok())
        .expect("a request count");
    assert!(requests > 0 && requests < 1_000_000, "the time bound stops the loop: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_modes_report_the_bytes_and_files_moved() {
    let cluster = TestCluster::start().await;
    cluster.write_file("big.bin", &vec![5u8; 3 * 1024 * 1024 + 1]);
    let (code, stdout, stderr) = bench(cluster.main(), &["retr", "big.bin"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("retr: files 1, bytes 3145729,"), "{stdout}");

    let (code, stdout, stderr) = bench(cluster.main(), &["stor", "--mib", "2", "--path", "up.bin"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stor: files 1, bytes 2097152,"), "{stdout}");
    assert!(!cluster.root.path().join("up.bin").exists(), "the upload is deleted afterwards");

    std::fs::create_dir(cluster.root.path().join("small")).expect("mkdir");
    for index in 0..25 {
        std::fs::write(cluster.root.path().join(format!("small/f{index}")), vec![1u8; 4096]).expect("write");
    }
    let (code, stdout, stderr) = bench(cluster.main(), &["small", "small", "--max-files", "20"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("small: files 20, bytes 81920,"), "{stdout}");

    let (code, _, stderr) = bench(cluster.main(), &["retr", "missing.bin"]).await;
    assert_eq!(code, 2, "a failed benchmark says so");
    assert!(stderr.contains("RETR missing.bin"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_mode_counts_the_sessions_it_holds() {
    let cluster = TestCluster::start().await;
    let pid = std::process::id().to_string();
    let (code, stdout, stderr) =
        bench(cluster.main(), &["idle", "-n", "150", "--concurrency", "16", "--hold", "0.2", "--pid", &pid]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("idle: 150 of 150 sessions logged in, 0 failed"), "{stdout}");
    assert!(stdout.contains("KiB per session"), "{stdout}");
}
