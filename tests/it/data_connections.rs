//! The data connection's life inside our libunftp (the patches of issue 14): who runs the
//! transfer, when its replies go out, and what a newer `PASV` does to it.

use tokio::io::AsyncReadExt;

use crate::support::{sparse, RawFtp, TestCluster};

async fn server() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasv_during_a_download_neither_aborts_it_nor_takes_its_place() {
    // libunftp patch 22: the transfer runs in the passive accept task, whose abort handle a newer
    // PASV uses to close a listener nobody connected to; a running transfer must not be it.
    let cluster = server().await;
    let size = 64 << 20;
    sparse(&cluster, "big.bin", size);
    std::fs::write(cluster.root.path().join("small.txt"), b"small file\n").expect("write");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("RETR big.bin").await.0, 150);
    let mut first = vec![0u8; 1 << 16];
    data.read_exact(&mut first).await.expect("the first bytes");

    let mut next = raw.passive(cluster.main()).await;
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).await.expect("the rest of the download");
    assert_eq!(first.len() + rest.len(), size as usize, "the whole file arrived");
    assert_eq!(raw.reply().await.0, 226, "and the download ended well");

    assert_eq!(raw.command("RETR small.txt").await.0, 150, "the newer data connection serves the next command");
    let mut small = Vec::new();
    next.read_to_end(&mut small).await.expect("the small file");
    assert_eq!(small, b"small file\n");
    assert_eq!(raw.reply().await.0, 226);
}
