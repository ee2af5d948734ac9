//! `--proxy-protocol` on a main server (issue 13): connections must start with a PROXY
//! protocol header; the header's client is the session's client (access rules, `STAT`, logs).
//! HAProxy in front of two main servers is in [`crate::shared_registry`].

use crate::support::{connect, site, RawFtp, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_main_server_with_proxy_protocol_refuses_connections_without_a_header() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.proxy_protocol = true;
            config
        },
        |cluster| cluster,
    )
    .await;
    let (mut raw, reply) = RawFtp::connect_from_sending(cluster.main(), b"USER x\r\n").await;
    assert_eq!(reply.0, 421, "{}", reply.1);
    assert!(reply.1.contains("PROXY protocol header"), "{}", reply.1);
    assert!(raw.closed().await);
    // With a header, the session's client is the one the header names: a client from another
    // host is refused in open mode (loopback only), whatever address the proxy connects from.
    let (mut raw, reply) =
        RawFtp::connect_from_sending(cluster.main(), b"PROXY TCP4 192.0.2.9 127.0.0.1 4242 21\r\n").await;
    assert_eq!(reply.0, 220);
    assert_eq!(raw.log_in_as("tester", "secret").await.0, 530);
    let v2_local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let (mut raw, reply) = RawFtp::connect_from_sending(cluster.main(), v2_local).await;
    assert!(reply.0 == 220 && reply.1.contains("health check"), "LOCAL (the proxy's health check): {reply:?}");
    assert!(raw.closed().await, "a health check gets the greeting, not a session");
    let (mut raw, reply) =
        RawFtp::connect_from_sending(cluster.main(), b"PROXY TCP4 127.0.0.9 127.0.0.1 4242 21\r\n").await;
    assert_eq!(reply.0, 220);
    assert_eq!(raw.log_in_as("tester", "secret").await.0, 230);
    let (code, text) = raw.command("STAT").await;
    assert!(code == 211 && text.contains("127.0.0.9"), "{text}");
    // The cluster's own workers are reached directly: no header needed there.
    let mut ftp = connect(cluster.address("SV1")).await;
    assert_eq!(site(&mut ftp, "ADD 2 3").await.0, 200);
    // ... and routing through the main server (which reaches them directly) works.
    assert_eq!(raw.command("SITE ADD 2 3").await.0, 200);
}

#[test]
fn bad_registry_and_proxy_settings_are_refused_with_a_clear_message() {
    let root = tempfile::tempdir().expect("temporary folder");
    let folder = root.path().to_str().expect("utf-8");
    let cases: [(&[&str], &str); 4] = [
        (&["--registry", "etcd://"], "no etcd endpoint"),
        (&["--registry", "etcd://localhost"], "bad etcd endpoint \"localhost\""),
        (&["--registry", "etcd://h:1,,h:2"], "bad etcd endpoint"),
        (&["--registry", "etcd://h:99999"], "bad etcd endpoint \"h:99999\""),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["server", "SV0", folder, "--listen", "127.0.0.1:0", "--no-workers"];
        args.extend_from_slice(flags);
        let (code, _, stderr) = crate::support::run_ftpcalc(&args, "", &[]);
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains("--registry") && stderr.contains(expected), "{flags:?}: {stderr}");
    }
    // A worker is reached directly by its main server: it refuses the PROXY protocol.
    let args = [
        "worker",
        "W1",
        folder,
        "--join",
        "127.0.0.1:9",
        "--services",
        "ADD",
        "--secret",
        "0123456789abcdef0123",
        "--proxy-protocol",
    ];
    let (code, _, stderr) = crate::support::run_ftpcalc(&args, "", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the PROXY protocol is for main servers"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_counts_the_client_the_header_names_not_the_proxy() {
    let cluster = TestCluster::start_config(
        |mut config| {
            config.options.proxy_protocol = true;
            config.options.access.limits.max_connections_per_ip = 2;
            config
        },
        |cluster| cluster,
    )
    .await;
    let header = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 4242 21\r\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let (raw, reply) = RawFtp::connect_from_sending(cluster.main(), header("127.0.0.5").as_bytes()).await;
        assert_eq!(reply.0, 220, "{}", reply.1);
        held.push(raw);
    }
    let (_, refused) = RawFtp::connect_from_sending(cluster.main(), header("127.0.0.5").as_bytes()).await;
    assert_eq!(refused.0, 421, "a third connection from 127.0.0.5: {}", refused.1);
    // All of them came from the proxy's address (127.0.0.1): another client is still let in.
    let (mut other, greeting) = RawFtp::connect_from_sending(cluster.main(), header("127.0.0.6").as_bytes()).await;
    assert_eq!(greeting.0, 220, "{}", greeting.1);
    assert_eq!(other.log_in_as("tester", "secret").await.0, 230);
}
