//! Stock FTP clients (curl, Python's ftplib, lftp) against a real cluster: SITE commands,
//! listings and downloads, passive and active mode.

use crate::support::{run_stock, stock_client, TestCluster};

const CONTENTS: &[u8] = b"hello from the ftpcalc test suite\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sends_site_commands_lists_and_downloads() {
    let Some(curl) = stock_client("curl") else {
        return;
    };
    let cluster = TestCluster::start().await;
    cluster.write_file("hello.txt", CONTENTS);
    let url = format!("ftp://{}/", cluster.main());
    let (ok, _, stderr) =
        run_stock(&curl, &["-sS", "-v", "--max-time", "20", "-Q", "SITE ADD 2 3", "-Q", "SITE LOOKUP MUL", &url]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("< 200 5 (computed by SV1)"), "{stderr}");
    assert!(stderr.contains(&format!("< 200 MUL SV3={}", cluster.address("SV3"))), "{stderr}");
    let (ok, listing, stderr) = run_stock(&curl, &["-sS", "--max-time", "20", &url]).await;
    assert!(ok && listing.contains("hello.txt"), "{listing}{stderr}");
    let (ok, body, stderr) = run_stock(&curl, &["-sS", "--max-time", "20", &format!("{url}hello.txt")]).await;
    assert!(ok && body.as_bytes() == CONTENTS, "{body:?} {stderr}");
    // Active mode (PORT), which classic clients use.
    let (ok, body, stderr) =
        run_stock(&curl, &["-sS", "--max-time", "20", "--disable-eprt", "-P", "127.0.0.1", &format!("{url}hello.txt")])
            .await;
    assert!(ok && body.as_bytes() == CONTENTS, "active mode: {body:?} {stderr}");
    // A refused SITE command makes curl fail with its "quote command" error, naming the reply.
    let (ok, _, stderr) = run_stock(&curl, &["-sS", "-v", "--max-time", "20", "-Q", "SITE ADD 2 x", &url]).await;
    assert!(!ok && stderr.contains("< 501 operand 2 (x) is not an integer"), "{stderr}");
}

const FTPLIB_SCRIPT: &str = r#"
import ftplib, io, sys
host, port, passive = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "passive"
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=20)
ftp.login("py", "secret")
ftp.set_pasv(passive)
print(ftp.sendcmd("SITE ADD 2 3"))
print(ftp.sendcmd("SITE INC 99999999999999999999"))
try:
    ftp.sendcmd("SITE LOOKUP")
except ftplib.error_perm as error:
    print("refused", error)
print("names", ftp.nlst())
lines = []
ftp.retrlines("LIST", lines.append)
print("list", lines)
ftp.retrlines("MLSD", lines.append)
print("mlsd", [line for line in lines if "hello.txt" in line])
data = io.BytesIO()
ftp.retrbinary("RETR hello.txt", data.write)
print("body", data.getvalue())
ftp.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ftplib_sends_site_commands_lists_and_downloads_in_both_modes() {
    let Some(python) = stock_client("python3") else {
        return;
    };
    let cluster = TestCluster::start().await;
    cluster.write_file("hello.txt", CONTENTS);
    let port = cluster.main().port().to_string();
    for mode in ["passive", "active"] {
        let (ok, stdout, stderr) = run_stock(&python, &["-c", FTPLIB_SCRIPT, "127.0.0.1", &port, mode]).await;
        assert!(ok, "{mode}: {stdout}{stderr}");
        for expected in [
            "200 5 (computed by SV1)",
            "200 100000000000000000000 (computed by SV4)",
            "refused 501 LOOKUP takes a service name",
            "names ['hello.txt']",
            "hello.txt'",
            "type=file",
            r"body b'hello from the ftpcalc test suite\n'",
        ] {
            assert!(stdout.contains(expected), "{mode}: {stdout:?} lacks {expected:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_sends_site_commands_lists_and_downloads() {
    let Some(lftp) = stock_client("lftp") else {
        return;
    };
    let cluster = TestCluster::start().await;
    cluster.write_file("hello.txt", CONTENTS);
    let download = tempfile::tempdir().expect("temporary folder");
    let target = download.path().join("copy.txt");
    let script = format!(
        "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; \
         quote SITE ADD 2 3; quote SITE SERVERS; cls -1; get hello.txt -o {}; bye",
        target.display()
    );
    let main = cluster.main();
    let (ok, stdout, stderr) =
        run_stock(&lftp, &["-u", "lftp,secret", "-p", &main.port().to_string(), "-e", &script, "127.0.0.1"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("200 5 (computed by SV1)"), "{stdout}");
    assert!(stdout.contains(&format!("SV2 {} worker SUB", cluster.address("SV2"))), "{stdout}");
    assert!(stdout.lines().any(|line| line.trim() == "hello.txt"), "{stdout}");
    assert_eq!(std::fs::read(&target).expect("downloaded"), CONTENTS);
}
