//! The wire, command by command (issue 11): what any stock client sees from a raw control
//! connection, for each behaviour our patched libunftp fixes. Each test names the fix.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{names_in, RawFtp, TestCluster};

/// A cluster with no workers (the wire tests need only the main server).
async fn server() -> TestCluster {
    TestCluster::start_config(|config| config.workers(Vec::new()), |cluster| cluster).await
}

#[tokio::test]
async fn malformed_commands_get_a_reply_and_the_session_goes_on() {
    // libunftp patch 2: a 501 from the line parser used to end the session.
    let cluster = server().await;
    let mut raw = RawFtp::login(cluster.main()).await;
    for line in ["NOOP x", "MODE Z", "REST -1", "STRU Q", "PASV now", "ABOR everything", "SIZE", "RNFR"] {
        let (code, text) = raw.command(line).await;
        assert!((500..600).contains(&code), "{line}: {code} {text}");
        assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on after {line:?}");
    }
    for bytes in [&b"NOOP \xff\xfe\r\n"[..], &b"\xff\xfeNOOP\r\n"[..]] {
        raw.send_bytes(bytes).await;
        assert_eq!(raw.reply().await.0 / 100, 5, "invalid UTF-8: {bytes:?}");
        assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on after invalid UTF-8");
    }
}

#[tokio::test]
async fn stou_with_a_name_stores_under_a_unique_name_that_starts_with_it() {
    // libunftp patch 2: `STOU name` (tnftp's `sunique`) got 501 and the session was dropped.
    let cluster = server().await;
    cluster.write_file("report.txt", b"the first");
    let mut raw = RawFtp::login(cluster.main()).await;
    assert_eq!(raw.command("TYPE I").await.0, 200);
    for name in ["report.txt", ""] {
        let mut data = raw.passive(cluster.main()).await;
        let (code, text) = raw.command(&format!("STOU {name}").trim_end().to_string()).await;
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
