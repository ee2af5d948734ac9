//! Every SITE command on the main server and on a worker, success and error replies, over a
//! real connection; after every refusal the connection must still answer.

use crate::support::{answer_and_server, connect, site, TestCluster};
use suppaftp::tokio::AsyncFtpStream;

/// Sends `line`, checks the reply code and that the text contains `expected`.
async fn expect(ftp: &mut AsyncFtpStream, line: &str, code: u32, expected: &str) -> String {
    let (got_code, text) = site(ftp, line).await;
    assert_eq!(got_code, code, "SITE {}: {text}", excerpt(line));
    assert!(text.contains(expected), "SITE {}: {text:?} lacks {expected:?}", excerpt(line));
    text
}

fn excerpt(line: &str) -> String {
    line.chars().take(60).collect()
}

/// The connection still works: a NOOP and a computation both succeed (ADD works on the main
/// server and on SV1, the servers these tests refuse things on).
async fn still_usable(ftp: &mut AsyncFtpStream) {
    ftp.noop().await.expect("NOOP after a refusal");
    let (code, text) = site(ftp, "ADD 1 1").await;
    assert_eq!((code, answer_and_server(&text)), (200, ("2", "SV1")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_server_routes_every_arithmetic_service_to_its_worker() {
    let cluster = TestCluster::start().await;
    let mut ftp = connect(cluster.main()).await;
    for (line, answer, server) in [
        ("ADD 2 3", "5", "SV1"),
        ("ADD 1 2 3 4 5 6 7 8 9 10", "55", "SV1"),
        ("SUB 10 3 2", "5", "SV2"),
        ("SUB 2 3", "-1", "SV2"),
        ("MUL 99999999999999999999 99999999999999999999", "9999999999999999999800000000000000000001", "SV3"),
        ("INC -1", "0", "SV4"),
        ("inc 18446744073709551615", "18446744073709551616", "SV4"),
    ] {
        let text = expect(&mut ftp, line, 200, answer).await;
        assert_eq!(answer_and_server(&text), (answer, server), "SITE {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_answer_their_own_services_and_refuse_others_naming_the_main_server() {
    let cluster = TestCluster::start().await;
    let main = cluster.main().to_string();
    let mut sv1 = connect(cluster.address("SV1")).await;
    let text = expect(&mut sv1, "ADD 40 2", 200, "42").await;
    assert_eq!(answer_and_server(&text), ("42", "SV1"));
    for other in ["SUB 1 2", "MUL 1 2", "INC 1"] {
        let text = expect(&mut sv1, other, 504, "does not offer").await;
        assert!(text.contains(&main) && text.contains("SV0"), "{text}");
    }
    expect(&mut sv1, "LOOKUP ADD", 502, &format!("main server SV0 at {main}")).await;
    expect(&mut sv1, "SERVERS", 502, &main).await;
    let mut sv4 = connect(cluster.address("SV4")).await;
    expect(&mut sv4, "INC 9", 200, "10 (computed by SV4)").await;
    expect(&mut sv4, "ADD 1 1", 504, "SV4 does not offer ADD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_tells_which_servers_offer_a_service_in_a_parseable_form() {
    let cluster = TestCluster::start().await;
    let mut ftp = connect(cluster.main()).await;
    for (service, worker) in [("ADD", "SV1"), ("sub", "SV2"), ("MUL", "SV3"), ("INC", "SV4")] {
        let text = expect(&mut ftp, &format!("LOOKUP {service}"), 200, "").await;
        let expected = format!("{} {worker}={}", service.to_uppercase(), cluster.address(worker));
        assert_eq!(text, expected);
    }
    expect(&mut ftp, "LOOKUP NOSUCH", 504, "no server offers NOSUCH").await;
    expect(&mut ftp, "LOOKUP", 501, "LOOKUP SERVICE").await;
    expect(&mut ftp, "LOOKUP ADD SUB", 501, "exactly one").await;
    expect(&mut ftp, "LOOKUP A/B", 501, "service name").await;
    still_usable(&mut ftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_lists_the_whole_cluster() {
    let cluster = TestCluster::start().await;
    let mut ftp = connect(cluster.main()).await;
    let text = expect(&mut ftp, "SERVERS", 200, "5 servers").await;
    for entry in cluster.cluster.servers() {
        let services = if entry.services.is_empty() { "-".to_string() } else { entry.services.join(",") };
        let line = format!("{} {} {} {}", entry.name, entry.address, entry.role, services);
        assert!(text.contains(&line), "{text:?} lacks {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_help_describe_each_server() {
    let cluster = TestCluster::start().await;
    let pid = std::process::id();
    let version = env!("CARGO_PKG_VERSION");
    let mut main = connect(cluster.main()).await;
    let info = expect(&mut main, "INFO", 200, "name=SV0 role=main").await;
    assert!(info.contains(&format!("pid={pid} version={version}")), "{info}");
    assert!(info.contains("routes=ADD,INC,MUL,SUB"), "{info}");
    let help = expect(&mut main, "HELP", 214, "SITE commands of SV0 (main)").await;
    for verb in ["LOOKUP SERVICE", "SERVERS", "INFO", "ADD A B", "SUB A B", "MUL A B", "INC A"] {
        assert!(help.contains(verb), "{help:?} lacks {verb}");
    }
    let mut sv3 = connect(cluster.address("SV3")).await;
    let info = expect(&mut sv3, "INFO", 200, "name=SV3 role=worker").await;
    assert!(info.contains("services=MUL") && info.contains(&format!("main=SV0@{}", cluster.main())), "{info}");
    expect(&mut sv3, "HELP", 214, "SITE commands of SV3 (worker)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_names_the_server() {
    let cluster = TestCluster::start().await;
    let ftp = suppaftp::tokio::AsyncFtpStream::connect(cluster.address("SV2")).await.expect("connect");
    let greeting = ftp.get_welcome_msg().map(str::trim).expect("a greeting");
    let lines: Vec<&str> = greeting.lines().collect();
    assert_eq!(lines.last(), Some(&"220 ftpcalc SV2 (worker) ready"), "{greeting}");
    assert!(lines[0].starts_with("220-nonce=") && lines[0].len() > 40, "a fresh nonce for cluster logins: {greeting}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arithmetic_input_gets_501_and_the_connection_stays_usable() {
    let cluster = TestCluster::start().await;
    let too_many = vec!["1"; ftpcalc::services::MAX_OPERANDS + 1].join(" ");
    let too_long = format!("1 {}", "9".repeat(ftpcalc::services::MAX_OPERAND_DIGITS + 1));
    for address in [cluster.main(), cluster.address("SV1")] {
        let mut ftp = connect(address).await;
        expect(&mut ftp, "ADD 2 x", 501, "operand 2 (x) is not an integer").await;
        expect(&mut ftp, "ADD 2.5 1", 501, "not an integer").await;
        expect(&mut ftp, "ADD 0x10 1", 501, "not an integer").await;
        expect(&mut ftp, "ADD", 501, "got 0").await;
        expect(&mut ftp, "ADD 7", 501, "got 1").await;
        expect(&mut ftp, &format!("ADD {too_many}"), 501, "got 65").await;
        expect(&mut ftp, &format!("ADD {too_long}"), 501, "has 1001 digits, the limit is 1000").await;
        still_usable(&mut ftp).await;
    }
    let mut ftp = connect(cluster.main()).await;
    expect(&mut ftp, "INC", 501, "exactly 1").await;
    expect(&mut ftp, "INC 1 2", 501, "exactly 1").await;
    expect(&mut ftp, "SUB 1", 501, "usage: SUB A B").await;
    expect(&mut ftp, "MUL a b", 501, "usage: MUL A B").await;
    still_usable(&mut ftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_site_command_gets_502() {
    let cluster = TestCluster::start().await;
    for address in [cluster.main(), cluster.address("SV1")] {
        let mut ftp = connect(address).await;
        expect(&mut ftp, "DIVIDE 4 2", 502, "").await;
        expect(&mut ftp, "", 502, "").await;
        still_usable(&mut ftp).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_command_lines_get_500_and_long_operands_501_without_stalling() {
    let cluster = TestCluster::start().await;
    let mut ftp = connect(cluster.main()).await;
    // Lines over the control channel's 4 KiB limit never reach the SITE handler.
    expect(&mut ftp, &format!("MUL 3 {}", "7".repeat(300_000)), 500, "too long").await;
    expect(&mut ftp, &format!("ADD {}", "1 ".repeat(100_000)), 500, "too long").await;
    // Within it, the services' own bounds answer.
    expect(&mut ftp, &format!("MUL 3 {}", "7".repeat(1001)), 501, "has 1001 digits").await;
    expect(&mut ftp, &format!("ADD {}", "1 ".repeat(65)), 501, "got 65").await;
    still_usable(&mut ftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_never_carry_line_breaks_from_arguments() {
    let cluster = TestCluster::start().await;
    let mut ftp = connect(cluster.main()).await;
    // Control characters inside an argument are quoted back in the refusal, but never raw.
    let (code, text) = site(&mut ftp, "ADD 1 2\u{1}\u{b}x\u{7f}").await;
    assert_eq!(code, 501, "{text}");
    assert!(!text.contains('\u{b}') && !text.contains('\n') && !text.contains('\r'), "{text:?}");
    still_usable(&mut ftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_commands_need_a_login() {
    let cluster = TestCluster::start().await;
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(cluster.main()).await.expect("connect");
    let (code, _) = site(&mut ftp, "ADD 2 3").await;
    assert_eq!(code, 530);
}
