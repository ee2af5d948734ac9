//! Connection limits and the login and idle timeouts (issue 10): what a client that opens too
//! many connections, never logs in, or falls silent, gets.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ftpcalc::Limits;

use crate::support::{RawFtp, TestCluster};

/// The test cluster with its limits changed by `change`.
async fn with_limits(change: impl FnOnce(&mut Limits)) -> TestCluster {
    TestCluster::start_config(
        |mut config| {
            change(&mut config.options.access.limits);
            config
        },
        |cluster| cluster,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_fifty_one_from_one_address_gets_421_and_is_closed() {
    let cluster = with_limits(|limits| limits.max_connections_per_ip = 50).await;
    let mut held = Vec::new();
    for _ in 0..50 {
        let (raw, greeting) = RawFtp::connect(cluster.main()).await;
        assert_eq!(greeting.0, 220, "{}", greeting.1);
        held.push(raw);
    }
    let (mut refused, greeting) = RawFtp::connect(cluster.main()).await;
    assert_eq!(greeting.0, 421);
    assert!(greeting.1.contains("too many connections from your address (50)"), "{}", greeting.1);
    assert!(refused.closed().await, "closed at once");
    let (_, other) = RawFtp::connect_from([127, 0, 0, 3].into(), cluster.main()).await;
    assert_eq!(other.0, 220, "another address is not limited by this one's connections");
    drop(held.pop());
    let freed =
        crate::support::eventually(Duration::from_secs(5), async || RawFtp::connect(cluster.main()).await.1 .0 == 220)
            .await;
    assert!(freed, "a closed connection frees its place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_limit_holds_for_all_servers_of_the_process() {
    let cluster = with_limits(|limits| limits.max_connections = 3).await;
    let (_a, first) = RawFtp::connect(cluster.main()).await;
    let (_b, second) = RawFtp::connect(cluster.address("SV1")).await;
    let (_c, third) = RawFtp::connect(cluster.address("SV2")).await;
    assert_eq!((first.0, second.0, third.0), (220, 220, 220));
    let (_, fourth) = RawFtp::connect(cluster.address("SV3")).await;
    assert_eq!(fourth.0, 421);
    assert!(fourth.1.contains("too many connections (3)"), "{}", fourth.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_logs_in_is_closed_after_the_login_timeout() {
    let cluster = with_limits(|limits| limits.login_timeout = Duration::from_secs(1)).await;
    let started = Instant::now();
    let (mut idle, greeting) = RawFtp::connect(cluster.main()).await;
    assert_eq!(greeting.0, 220);
    let mut logged_in = RawFtp::login(cluster.main()).await;
    let (code, text) = idle.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("Login timed out"), "{text}");
    assert!(idle.closed().await);
    assert!(started.elapsed() < Duration::from_secs(5), "closed after about a second: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(logged_in.command("NOOP").await.0, 200, "a logged-in session is not affected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_keep_a_session_open_and_an_idle_one_is_closed_after_the_idle_timeout() {
    let cluster = with_limits(|limits| limits.idle_timeout = Duration::from_secs(1)).await;
    let mut raw = RawFtp::login(cluster.main()).await;
    // A command every 400 ms for 2.4 s: each sets the one-second timer again.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(raw.command("NOOP").await.0, 200, "a session in use stays open");
    }
    let idle_from = Instant::now();
    let (code, text) = raw.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("timed out"), "{text}");
    assert!(idle_from.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", idle_from.elapsed());
    assert!(raw.closed().await, "closed after the 421");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_the_client_stops_reading_ends_with_426_after_the_idle_timeout() {
    // libunftp patch 59: while a transfer ran, the idle timeout was off, and nothing bounded a
    // transfer that made no progress: a client that opened a download and never read it held
    // its session, its data connection and the open file for ever. A transfer with nothing
    // sent or received for the idle timeout now ends with `426`; the session goes on (and
    // times out in its turn), and the data connection is closed.
    let cluster = with_limits(|limits| limits.idle_timeout = Duration::from_secs(1)).await;
    crate::support::sparse(&cluster, "big.bin", 1 << 30);
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let port = raw.passive_port().await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut data = socket.connect((cluster.main().ip(), port).into()).await.expect("data connection");
    assert_eq!(raw.command("RETR big.bin").await.0, 150);
    let stalled_from = Instant::now();
    let (code, text) = raw.reply().await;
    assert_eq!(code, 426, "{text}");
    assert!(
        stalled_from.elapsed() >= Duration::from_millis(900),
        "not before the timeout: {:?}",
        stalled_from.elapsed()
    );
    assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), data.read_to_end(&mut rest)).await.expect("in time");
    assert!(ended.is_err() || rest.len() < 1 << 30, "the data connection is closed before the end of the file");
    assert_eq!(raw.reply().await.0, 421, "and the idle session times out as usual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_client_stops_sending_ends_with_426_and_stores_nothing() {
    // libunftp patch 59, for uploads: a client that sends part of a file and then nothing,
    // keeping its data connection open, no longer holds the session for ever; the partial upload
    // is not stored.
    let cluster = with_limits(|limits| limits.idle_timeout = Duration::from_secs(1)).await;
    cluster.write_file("keep.bin", b"the old contents");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("STOR keep.bin").await.0, 150);
    data.write_all(&[b'x'; 100_000]).await.expect("part of the upload");
    let (code, text) = raw.reply().await;
    assert_eq!(code, 426, "{text}");
    assert_eq!(raw.command("NOOP").await.0, 200, "the session goes on");
    let _ = data.write_all(b"too late").await;
    drop(data);
    assert_eq!(std::fs::read(cluster.root.path().join("keep.bin")).expect("file"), b"the old contents");
    let clean = crate::support::eventually(Duration::from_secs(5), async || {
        crate::support::names_in(cluster.root.path()) == ["keep.bin"]
    })
    .await;
    assert!(clean, "no temporary file left: {:?}", crate::support::names_in(cluster.root.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_connections_beyond_max_transfers_get_425_and_every_freed_place_is_used_again() {
    // libunftp patch 61 and `max_transfers`: data connections are bounded on their own, so an
    // idle session costs one descriptor instead of keeping room for four. A session's new
    // listener reuses the place of the unused one it replaces; a place comes free when its
    // transfer ends or its passive port is closed (`ABOR`).
    let cluster = with_limits(|limits| limits.max_transfers = 2).await;
    cluster.write_file("f.txt", b"contents");
    let (mut a, mut b, mut c) = (
        RawFtp::login_binary(cluster.main()).await,
        RawFtp::login_binary(cluster.main()).await,
        RawFtp::login_binary(cluster.main()).await,
    );
    a.passive_port().await;
    b.passive_port().await;
    let (code, text) = c.command("EPSV").await;
    assert_eq!(code, 425, "{text}");
    assert!(text.contains("Too many data connections"), "{text}");
    let (code, _) = c.command("EPRT |1|127.0.0.1|40000|").await;
    assert_eq!(code, 425, "active mode too");
    for _ in 0..5 {
        a.passive_port().await; // a new listener of the same session: its old place
    }
    // A's transfer ends: its place is C's.
    let mut data = a.passive(cluster.main()).await;
    assert_eq!(a.command("RETR f.txt").await.0, 150);
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).await.expect("the file");
    assert_eq!(a.reply().await.0, 226);
    let taken = crate::support::eventually(Duration::from_secs(5), async || c.command("EPSV").await.0 == 229).await;
    assert!(taken, "the place of A's finished transfer");
    assert_eq!(a.command("EPSV").await.0, 425, "B and C hold both places");
    // B's passive port closed by ABOR: its place is A's.
    assert_eq!(b.command("ABOR").await.0, 226);
    let taken = crate::support::eventually(Duration::from_secs(5), async || a.command("EPSV").await.0 == 229).await;
    assert!(taken, "the place of B's closed passive port");
    // C's session ends with its listener open: its place is B's (libunftp patch 62).
    assert_eq!(c.command("QUIT").await.0, 221);
    let taken = crate::support::eventually(Duration::from_secs(5), async || b.command("EPSV").await.0 == 229).await;
    assert!(taken, "the place of C's ended session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_port_closes_with_its_session() {
    // libunftp patch 62: a passive listener waiting for its transfer command outlived its
    // session (QUIT, or the client gone) until the data connection timeout (30 s by default):
    // its descriptor, and anything a stranger queued on it, stayed. It now closes with it.
    let cluster = TestCluster::start().await;
    for leaving in ["QUIT", "hang up"] {
        let mut raw = RawFtp::login(cluster.main()).await;
        let port = raw.passive_port().await;
        if leaving == "QUIT" {
            assert_eq!(raw.command("QUIT").await.0, 221);
        }
        drop(raw);
        let closed = crate::support::eventually(Duration::from_secs(5), async || {
            tokio::net::TcpStream::connect((cluster.main().ip(), port)).await.is_err()
        })
        .await;
        assert!(closed, "{leaving}: the passive port {port} still takes connections");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_place_serves_any_number_of_transfers_in_turn_and_sessions_in_parallel_share_them() {
    // libunftp patch 61: no place is lost along the way (200 downloads in turn with a single
    // place), and 8 sessions downloading at once with 2 places all finish (a refused `EPSV`
    // is tried again).
    let cluster = with_limits(|limits| limits.max_transfers = 1).await;
    cluster.write_file("f.txt", b"contents");
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    for round in 0..200 {
        let mut data = raw.passive(cluster.main()).await;
        assert_eq!(raw.command("RETR f.txt").await.0, 150, "round {round}");
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).await.expect("the file");
        assert_eq!((raw.reply().await.0, bytes.len()), (226, 8), "round {round}");
    }
    drop(raw);

    let cluster = with_limits(|limits| limits.max_transfers = 2).await;
    cluster.write_file("f.txt", b"contents");
    let mut sessions = tokio::task::JoinSet::new();
    for index in 0..8 {
        let address = cluster.main();
        sessions.spawn(async move {
            let mut raw = RawFtp::login_binary(address).await;
            let mut done = 0;
            let mut refused = 0;
            while done < 20 {
                let (code, text) = raw.command("EPSV").await;
                if code == 425 {
                    refused += 1;
                    assert!(refused < 100_000, "session {index}: refused for ever");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                assert_eq!(code, 229, "{text}");
                let port: u16 = text
                    .rsplit("|||")
                    .next()
                    .and_then(|rest| rest.split('|').next())
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                let mut data = tokio::net::TcpStream::connect((address.ip(), port)).await.expect("data connection");
                assert_eq!(raw.command("RETR f.txt").await.0, 150);
                let mut bytes = Vec::new();
                data.read_to_end(&mut bytes).await.expect("the file");
                assert_eq!((raw.reply().await.0, bytes.len()), (226, 8), "session {index}");
                done += 1;
            }
            done
        });
    }
    assert_eq!(crate::support::sum_of(sessions, Duration::from_secs(60)).await, 8 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epsv_behind_a_transfer_takes_no_place_and_abor_right_behind_pasv_frees_its_place() {
    // Review of libunftp patch 61: one session could take every place (`EPSV`, `RETR`, `EPSV`,
    // `RETR`... ran transfers side by side), so a session held at most two (a transfer and the
    // listener for the next). Since patch 63 an `EPSV` during a transfer waits for the
    // transfer's end, and takes no place meanwhile. And `ABOR` right behind `EPSV`, handled
    // before the listener's task ran, left the place taken with no listener.
    let cluster = with_limits(|limits| limits.max_transfers = 2).await;
    crate::support::sparse(&cluster, "big.bin", 1 << 30);
    let mut greedy = RawFtp::login_binary(cluster.main()).await;
    let download = greedy.passive(cluster.main()).await;
    assert_eq!(greedy.command("RETR big.bin").await.0, 150);
    greedy.send("EPSV").await;
    // Nothing answers the EPSV while the transfer runs; give the server time to read it, so
    // that the places below are counted with it waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut other = RawFtp::login_binary(cluster.main()).await;
    assert_eq!(other.command("EPSV").await.0, 229, "the EPSV waiting behind the transfer took no place");
    let mut third = RawFtp::login_binary(cluster.main()).await;
    let (code, text) = third.command("EPSV").await;
    assert_eq!(code, 425, "both places taken: {text}");
    assert_eq!(other.command("ABOR").await.0, 226, "frees the other session's place");
    greedy.send("ABOR").await;
    assert_eq!(greedy.codes::<3>().await, [426, 226, 229], "the transfer cut short, then the EPSV");
    drop(download);
    drop(greedy);

    let cluster = with_limits(|limits| limits.max_transfers = 1).await;
    let mut first = RawFtp::login(cluster.main()).await;
    let mut second = RawFtp::login(cluster.main()).await;
    for round in 0..20 {
        first.send_bytes(b"EPSV\r\nABOR\r\n").await;
        assert_eq!(first.codes::<2>().await, [229, 226], "round {round}");
        let taken =
            crate::support::eventually(Duration::from_secs(5), async || second.command("EPSV").await.0 == 229).await;
        assert!(taken, "round {round}: the place of the passive port ABOR closed");
        assert_eq!(second.command("ABOR").await.0, 226, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_switching_between_active_and_passive_mode_keeps_one_place() {
    // Review of libunftp patch 61: an unused active connection kept its place in its own task
    // until a newer `PASV`/`PORT` replaced it, and the newer one asked for a place first: with
    // every place taken, `EPRT` then `EPSV` got `425` from the session's own unused connection.
    // The unused active connection's place is now the session's, as a listener's is, and the
    // command that replaces it takes it over; `ABOR` frees it.
    let cluster = with_limits(|limits| limits.max_transfers = 1).await;
    cluster.write_file("f.txt", b"contents");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    for round in 0..10 {
        assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200, "round {round}");
        let _active = listener.accept().await.expect("the server connects");
        assert_eq!(raw.command("EPSV").await.0, 229, "round {round}: EPSV after EPRT");
        assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200, "round {round}: EPRT after EPSV");
        let (mut data, _) = listener.accept().await.expect("the server connects");
        assert_eq!(raw.command("RETR f.txt").await.0, 150, "round {round}");
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).await.expect("the file");
        assert_eq!(raw.reply().await.0, 226, "round {round}");
    }
    // An unused active connection closed by ABOR gives its place to another session.
    assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200);
    let _active = listener.accept().await.expect("the server connects");
    assert_eq!(raw.command("ABOR").await.0, 226);
    let mut other = RawFtp::login(cluster.main()).await;
    let taken = crate::support::eventually(Duration::from_secs(5), async || other.command("EPSV").await.0 == 229).await;
    assert!(taken, "the place of the aborted active connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_active_data_connection_closes_with_its_session() {
    // Review of libunftp patch 62: an active-mode connection waiting for its transfer command
    // outlived its session until the data connection timeout (30 s by default); the end of the
    // session now closes its command channel, and the connection with it.
    let cluster = TestCluster::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    for leaving in ["QUIT", "hang up"] {
        let mut raw = RawFtp::login(cluster.main()).await;
        assert_eq!(raw.command(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200);
        let (mut active, _) = listener.accept().await.expect("the server connects");
        if leaving == "QUIT" {
            assert_eq!(raw.command("QUIT").await.0, 221);
        }
        drop(raw);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), active.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{leaving}: the server still holds its active connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epsv_right_behind_a_transfer_gets_the_place_the_transfer_leaves() {
    // A guard (it passed before it was written too): a transfer's place comes free when its
    // task ends, just after its final reply is sent, and an `EPSV` sent behind the transfer
    // runs once that reply is out (libunftp patch 63). With one place in all, the `EPSV` must
    // still find it: the data task runs on to its end before the control loop handles its
    // message (the loop is woken on the same worker). Should that change, this gets `425`.
    let cluster = with_limits(|limits| limits.max_transfers = 1).await;
    for file in 0..8 {
        cluster.write_file(&format!("f{file}.txt"), format!("file {file}").as_bytes());
    }
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut port = raw.passive_port().await;
    for round in 0..300 {
        let mut data = tokio::net::TcpStream::connect(crate::support::loopback(port)).await.expect("connect");
        let file = round % 8;
        raw.send_bytes(format!("RETR f{file}.txt\r\nEPSV\r\n").as_bytes()).await;
        assert_eq!(raw.reply().await.0, 150, "round {round}");
        let mut contents = Vec::new();
        data.read_to_end(&mut contents).await.expect("download");
        assert_eq!(contents, format!("file {file}").as_bytes(), "round {round}");
        assert_eq!(raw.reply().await.0, 226, "round {round}");
        let (code, text) = raw.reply().await;
        assert_eq!(code, 229, "round {round}: the EPSV behind the transfer: {text}");
        port = crate::support::epsv_port(&text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_none_of_its_replies_is_closed_after_the_idle_timeout() {
    // libunftp patch 68: a client that sent commands and never read their replies held its
    // session for ever: the control loop waited for room to write them, and the idle timeout
    // does not run while the loop writes. A write that finds no room for the idle timeout now
    // ends the session.
    let cluster = with_limits(|limits| limits.idle_timeout = Duration::from_secs(1)).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut raw = RawFtp::over(socket.connect(cluster.main()).await.expect("connect")).await;
    assert_eq!(raw.log_in_as("raw", "raw").await.0, 230);
    // Commands until the connection takes no more (both sides' buffers full), at most 24 MB.
    let commands = b"NOOP\r\n".repeat(1000);
    let mut sent = 0usize;
    let mut full = false;
    for _ in 0..4000 {
        if tokio::time::timeout(Duration::from_millis(500), raw.send_bytes(&commands)).await.is_err() {
            full = true;
            break;
        }
        sent += 1000;
    }
    assert!(full, "the connection filled up ({sent} commands sent)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (replies, ended) = raw.read_rest(Duration::from_secs(10)).await;
    let answered = replies.split(|&byte| byte == b'\n').count().saturating_sub(1);
    assert!(ended, "the server closed the connection ({answered} replies read in 10 s)");
    assert!(answered < sent / 2, "closed before it answered what it was sent: {answered} of {sent}");
}
