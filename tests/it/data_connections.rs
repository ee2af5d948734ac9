//! The data connection's life inside our libunftp (the patches of issue 14): who runs the
//! transfer, when its replies go out, and what a newer `PASV` does to it.

use tokio::io::AsyncReadExt;

use crate::support::{epsv_port, sparse, RawFtp, TestCluster};

async fn server() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasv_during_a_download_neither_aborts_it_nor_takes_its_place_and_is_answered_after_it() {
    // libunftp patch 22: the transfer runs in the passive accept task, whose abort handle a newer
    // PASV uses to close a listener nobody connected to; a running transfer must not be it.
    // Since patch 63 the `EPSV` waits for the download's final reply (as in vsftpd and proftpd).
    let cluster = server().await;
    let size = 64 << 20;
    sparse(&cluster, "big.bin", size);
    std::fs::write(cluster.root.path().join("small.txt"), b"small file\n").expect("write");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("RETR big.bin").await.0, 150);
    let mut first = vec![0u8; 1 << 16];
    data.read_exact(&mut first).await.expect("the first bytes");

    raw.send("EPSV").await;
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).await.expect("the rest of the download");
    assert_eq!(first.len() + rest.len(), size as usize, "the whole file arrived");
    assert_eq!(raw.reply().await.0, 226, "and the download ended well");
    let (code, text) = raw.reply().await;
    assert_eq!(code, 229, "then the EPSV is answered: {text}");
    let mut next = tokio::net::TcpStream::connect((cluster.main().ip(), epsv_port(&text))).await.expect("connect");

    assert_eq!(raw.command("RETR small.txt").await.0, 150, "the newer data connection serves the next command");
    let mut small = Vec::new();
    next.read_to_end(&mut small).await.expect("the small file");
    assert_eq!(small, b"small file\n");
    assert_eq!(raw.reply().await.0, 226);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_back_to_back_get_their_replies_in_order_and_every_byte() {
    // libunftp patch 23: the replies a data channel sends in one go (150, then 226 once a small
    // file is out) are written together; each must still come in its place, with nothing left
    // unsent before the next command.
    let cluster = server().await;
    let contents = |file: usize| -> Vec<u8> { (0..file * 37 % 5000).map(|at| (at * 7 + file) as u8).collect() };
    for file in 0..40 {
        std::fs::write(cluster.root.path().join(format!("f{file}.bin")), contents(file)).expect("write");
    }
    let sessions = (0..8).map(|session| {
        let main = cluster.main();
        tokio::spawn(async move {
            let mut raw = RawFtp::login_binary(main).await;
            for round in 0..60 {
                let file = (session * 13 + round) % 40;
                let mut data = raw.passive(main).await;
                let (code, text) = raw.command(&format!("RETR f{file}.bin")).await;
                assert_eq!(code, 150, "{text}");
                assert!(text.contains(&format!("({} bytes)", contents(file).len())), "{text}");
                let mut received = Vec::new();
                data.read_to_end(&mut received).await.expect("the file");
                assert_eq!(received, contents(file), "f{file}.bin arrived whole");
                assert_eq!(raw.reply().await.0, 226, "f{file}.bin");
                if round % 10 == 0 {
                    assert_eq!(raw.command("NOOP").await.0, 200, "nothing else was waiting");
                }
            }
            assert_eq!(raw.command("QUIT").await.0, 221);
            assert!(raw.closed().await, "closed after QUIT");
        })
    });
    for session in sessions.collect::<Vec<_>>() {
        session.await.expect("every session ran to the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_uses_the_working_folder_of_its_command_and_abor_ends_a_waiting_one() {
    // libunftp patch 24: the data connection is accepted when the transfer command comes, so the
    // command's working folder is the one that counts (the executor used to copy the folder
    // when the client connected, before a CWD that came between); and ABOR of a command still
    // waiting for its connection answers 426 then 226.
    let cluster = server().await;
    std::fs::create_dir(cluster.root.path().join("sub")).expect("mkdir");
    std::fs::write(cluster.root.path().join("f.txt"), b"top").expect("write");
    std::fs::write(cluster.root.path().join("sub/f.txt"), b"below").expect("write");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("CWD sub").await.0, 250);
    assert_eq!(raw.command("RETR f.txt").await.0, 150);
    let mut received = Vec::new();
    data.read_to_end(&mut received).await.expect("data");
    assert_eq!((raw.reply().await.0, received), (226, b"below".to_vec()));

    let (code, _) = raw.command("EPSV").await;
    assert_eq!(code, 229);
    raw.send("RETR f.txt").await;
    assert_eq!(raw.command("ABOR").await.0, 426, "the waiting transfer is cut short");
    assert_eq!(raw.reply().await.0, 226);
    assert_eq!(raw.command("NOOP").await.0, 200, "the session is in step");
    assert_eq!(raw.command("RETR f.txt").await.0, 425, "and its data connection is gone");
}
