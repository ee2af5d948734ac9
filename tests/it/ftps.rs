//! FTPS (issue 10): explicit TLS (RFC 4217) with stock clients, byte for byte; plain-text logins
//! refused from other hosts when TLS is required; open mode refusing other hosts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ftpcalc::accounts::{password, Account, Permissions, ServiceGrant};
use ftpcalc::{ClusterConfig, TlsConfig, TlsSource};
use tempfile::TempDir;

use crate::support::netns::TestHost;
use crate::support::{run_stock, stock_client, RawFtp, TestCluster};

const PASSWORD: &str = "correct-horse";

/// A self-signed certificate for `names`, in PEM files.
struct Certificate {
    _folder: TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn certificate(names: &[&str]) -> Certificate {
    let folder = tempfile::tempdir().expect("folder");
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).expect("certificate");
    let (cert, key) = (folder.path().join("cert.pem"), folder.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write");
    Certificate { _folder: folder, cert, key }
}

fn with_tls(mut config: ClusterConfig, certificate: &Certificate, required: bool) -> ClusterConfig {
    let access = &mut config.options.access;
    access.tls = Some(TlsConfig {
        source: TlsSource::Files { certificates: certificate.cert.clone(), key: certificate.key.clone() },
        required,
    });
    access.users = vec![Account {
        name: "alice".into(),
        password: password::hash(PASSWORD).expect("hash"),
        home: None,
        permissions: Permissions::all(),
        services: ServiceGrant::All,
    }];
    config
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The start of the Python scripts that drive a raw control connection through `AUTH TLS`:
/// `reply(f)`, the last line of the next reply on the file `f` (a socket's `makefile("rb")`),
/// and `context`, a TLS client context that trusts any certificate (the tests' self-signed one).
const RAW_TLS_CLIENT_PY: &str = r#"
import socket, ssl
def reply(f):
    while True:
        line = f.readline().decode()
        if not line:
            raise SystemExit("connection closed")
        if len(line) >= 4 and line[:3].isdigit() and line[3] == " ":
            return line
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
"#;

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|index| (index * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_move_files_over_ftps_byte_for_byte() {
    let (Some(curl), Some(lftp), Some(python)) = (stock_client("curl"), stock_client("lftp"), stock_client("python3"))
    else {
        return;
    };
    let certificate = certificate(&["localhost", "127.0.0.1"]);
    let cluster = TestCluster::start_config(|config| with_tls(config, &certificate, false), |cluster| cluster).await;
    let (mut raw, _) = RawFtp::connect(cluster.main()).await;
    let (code, features) = raw.command("FEAT").await;
    assert_eq!(code, 211);
    for feature in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(features.contains(feature), "FEAT lacks {feature}: {features}");
    }
    let local = tempfile::tempdir().expect("folder");
    let data = payload(1_500_001);
    std::fs::write(local.path().join("up.bin"), &data).expect("write");
    let url = |name: &str| format!("ftp://127.0.0.1:{}/{name}", cluster.main().port());
    let user = format!("alice:{PASSWORD}");

    let up = local.path().join("up.bin");
    let upload =
        ["--ssl-reqd", "--cacert", text(&certificate.cert), "--user", &user, "-sS", "-T", text(&up), &url("curl.bin")];
    let (ok, _, stderr) = run_stock(&curl, &upload).await;
    assert!(ok, "curl upload: {stderr}");
    let out = local.path().join("curl-out.bin");
    let download =
        ["--ssl-reqd", "--cacert", text(&certificate.cert), "--user", &user, "-sS", "-o", text(&out), &url("curl.bin")];
    let (ok, _, stderr) = run_stock(&curl, &download).await;
    assert!(ok, "curl download: {stderr}");
    assert!(
        std::fs::read(&out).expect("curl's copy") == data
            && std::fs::read(cluster.root.path().join("curl.bin")).expect("stored") == data
    );

    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:ca-file {}; set net:max-retries 1; \
         open -u alice,{PASSWORD} -p {} 127.0.0.1; put {} -o lftp.bin; get lftp.bin -o {}",
        text(&certificate.cert),
        cluster.main().port(),
        text(&local.path().join("up.bin")),
        text(&local.path().join("lftp-out.bin"))
    );
    let (ok, _, stderr) = run_stock(&lftp, &["-c", &script]).await;
    assert!(ok, "lftp: {stderr}");
    assert!(std::fs::read(local.path().join("lftp-out.bin")).expect("lftp's copy") == data);

    let script = format!(
        "import ftplib, ssl, io\n\
         context = ssl.create_default_context(cafile={cert:?})\n\
         ftp = ftplib.FTP_TLS(context=context)\n\
         ftp.connect('127.0.0.1', {port})\n\
         ftp.login('alice', {PASSWORD:?})\n\
         ftp.prot_p()\n\
         ftp.storbinary('STOR python.bin', open({up:?}, 'rb'))\n\
         out = io.BytesIO()\n\
         ftp.retrbinary('RETR python.bin', out.write)\n\
         open({down:?}, 'wb').write(out.getvalue())\n\
         ftp.quit()\n",
        cert = text(&certificate.cert),
        port = cluster.main().port(),
        up = text(&local.path().join("up.bin")),
        down = text(&local.path().join("python-out.bin")),
    );
    let (ok, _, stderr) = run_stock(&python, &["-c", &script]).await;
    assert!(ok, "ftplib: {stderr}");
    assert!(std::fs::read(local.path().join("python-out.bin")).expect("ftplib's copy") == data);

    // And our own client.
    let main = cluster.main().to_string();
    let folder = text(local.path());
    // Run without blocking a runtime thread: the cluster serves from this runtime, and a task
    // left in a blocked worker's slot waited out the whole client run (the routed `add` then
    // failed now and then with the worker timeout).
    let ours = async |command: &'static [&'static str]| {
        let mut args = vec![
            "client",
            "alice",
            folder,
            "--server",
            main.as_str(),
            "--password",
            PASSWORD,
            "--tls",
            "--tls-ca",
            text(&certificate.cert),
        ];
        args.extend_from_slice(command);
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ftpcalc")).args(args).output().await.expect("runs")
    };
    let put = ours(&["put", "up.bin"]).await;
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let stored = String::from_utf8_lossy(&put.stdout).trim().to_string();
    assert_eq!(stored, "/up.bin");
    std::fs::remove_file(local.path().join("up.bin")).expect("remove");
    let get = ours(&["get", "up.bin"]).await;
    assert!(get.status.success(), "{}", String::from_utf8_lossy(&get.stderr));
    assert!(std::fs::read(local.path().join("up.bin")).expect("our copy") == data);
    let sums = ours(&["add", "2", "3"]).await;
    assert_eq!(String::from_utf8_lossy(&sums.stdout).trim(), "5", "{}", String::from_utf8_lossy(&sums.stderr));
}

/// Runs `python3 -c script` inside `host`'s namespace; (success, stdout, stderr).
async fn python_in(host: &TestHost, script: &str) -> (bool, String, String) {
    let mut args: Vec<&str> = host.exec()[1..].to_vec();
    args.extend(["python3", "-c", script]);
    let ip = stock_client("ip").expect("ip, which made the namespace");
    run_stock(&ip, &args).await
}

/// A cluster listening on every address (so that the test host reaches it at `host.host` and
/// this machine at 127.0.0.1), changed by `change`.
async fn cluster_on_all_addresses(change: impl FnOnce(ClusterConfig) -> ClusterConfig) -> (TestCluster, u16) {
    let cluster = TestCluster::start_config(
        |config| change(config.listen(SocketAddr::from(([0, 0, 0, 0], 0))).workers(Vec::new())),
        |cluster| cluster,
    )
    .await;
    let port = cluster.main().port();
    (cluster, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_required_plain_logins_from_other_hosts_are_refused() {
    let Some(host) = TestHost::create_or_skip(3) else { return };
    let certificate = certificate(&["localhost", "127.0.0.1", &host.host]);
    let (_cluster, port) = cluster_on_all_addresses(|config| with_tls(config, &certificate, true)).await;
    let plain = format!(
        "import ftplib\nftp = ftplib.FTP()\nftp.connect({address:?}, {port})\n\
         try:\n    ftp.login('alice', {PASSWORD:?})\n    print('logged in')\n\
         except ftplib.error_perm as error:\n    print('refused', error)\n",
        address = host.host
    );
    let (ok, stdout, stderr) = python_in(&host, &plain).await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("refused 534"), "a plain login from another host: {stdout}");
    let secured = format!(
        "import ftplib, ssl\ncontext = ssl.create_default_context(cafile={cert:?})\n\
         ftp = ftplib.FTP_TLS(context=context)\nftp.connect({address:?}, {port})\n\
         ftp.login('alice', {PASSWORD:?})\nftp.prot_p()\nprint(ftp.sendcmd('SITE INFO')[:25])\n",
        cert = text(&certificate.cert),
        address = host.host
    );
    let (ok, stdout, stderr) = python_in(&host, &secured).await;
    assert!(ok && stdout.starts_with("200 name=SV0"), "a TLS login from another host: {stdout} {stderr}");
    let (mut local, _) = RawFtp::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert_eq!(local.log_in_as("alice", PASSWORD).await.0, 230, "plain text is still fine from this machine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_serves_this_machine_and_tells_other_hosts_how_to_add_accounts() {
    let Some(host) = TestHost::create_or_skip(4) else { return };
    let (_cluster, port) = cluster_on_all_addresses(|config| config).await;
    let script = format!(
        "import ftplib\nftp = ftplib.FTP()\nprint(ftp.connect({address:?}, {port}).replace('\\r\\n', ' '))\n\
         try:\n    ftp.login('anyone', 'anything')\n    print('logged in')\n\
         except ftplib.error_perm as error:\n    print('refused', error)\n",
        address = host.host
    );
    let (ok, stdout, stderr) = python_in(&host, &script).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("open mode") && stdout.contains("--config"), "the greeting says why and how: {stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("refused 530") && last.contains("open mode") && last.contains("[[users]]"),
        "the 530 says why: {stdout}"
    );
    let (mut local, greeting) = RawFtp::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert!(!greeting.1.contains("open mode"), "{}", greeting.1);
    assert_eq!(local.log_in_as("anyone", "anything").await.0, 230, "this machine is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tls_handshake_on_a_data_connection_gets_425_and_the_session_goes_on() {
    // libunftp patch 11: the handshake's error was unwrapped, which panicked the data task: no
    // reply after 150, and the session's idle timeout stayed off.
    use ftpcalc::cluster::control::Control;
    use tokio::io::AsyncWriteExt;
    let certificate = certificate(&["localhost", "127.0.0.1"]);
    let cluster = TestCluster::start_config(|config| with_tls(config, &certificate, false), |cluster| cluster).await;
    cluster.write_file("f.txt", b"secret");
    let control = Control::connect(cluster.main()).await.expect("connect");
    let (mut control, secured) = control.secure_if_offered().await.expect("AUTH TLS");
    assert!(secured);
    control.login("alice", PASSWORD).await.expect("login");
    for line in ["PBSZ 0", "PROT P"] {
        assert_eq!(control.command(line).await.expect(line).code, 200, "{line}");
    }
    let reply = control.command("EPSV").await.expect("EPSV");
    let text = reply.text();
    let port: u16 = text
        .rsplit("|||")
        .next()
        .and_then(|rest| rest.split('|').next())
        .and_then(|port| port.parse().ok())
        .expect("port");
    let mut data = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("data connection");
    data.write_all(b"this is not a TLS ClientHello\r\n").await.expect("garbage");
    let first = control.command("RETR f.txt").await.expect("RETR");
    let last = if first.code == 150 { control.reply().await.expect("final reply") } else { first };
    assert_eq!(last.code, 425, "{}", last.text());
    assert!(last.text().contains("TLS"), "{}", last.text());
    assert_eq!(control.command("NOOP").await.expect("NOOP").code, 200, "the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_routed_over_the_pipelined_tls_hop_each_get_their_own_answers() {
    // The main server's connections to a worker that offers TLS are under TLS, and quick
    // requests share them (pipelined): replies must still reach the request they answer.
    use ftpcalc::cluster::control::Control;
    use ftpcalc::cluster::worker_client::CONNECTIONS_PER_WORKER;
    let certificate = certificate(&["localhost", "127.0.0.1"]);
    let cluster = TestCluster::start_config(|config| with_tls(config, &certificate, false), |cluster| cluster).await;
    let worker = cluster.address("SV1");
    let (_, secured) = Control::connect(worker).await.expect("connect").secure_if_offered().await.expect("AUTH TLS");
    assert!(secured, "the worker offers TLS, so the hop to it is under TLS");
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..16u64 {
        // Logged in one after the other: password checks are slow on purpose.
        let mut ftp = crate::support::connect_as(cluster.main(), "alice", PASSWORD).await;
        clients.spawn(async move {
            for n in 0..25u64 {
                let (code, text) = crate::support::site(&mut ftp, &format!("ADD {client} {n} 1000")).await;
                assert_eq!(code, 200, "{text}");
                assert_eq!(crate::support::answer_and_server(&text), ((client + n + 1000).to_string().as_str(), "SV1"));
            }
            25usize
        });
    }
    let answered = crate::support::sum_of(clients, std::time::Duration::from_secs(120)).await;
    assert_eq!(answered, 16 * 25);
    let open = cluster.cluster.router().workers().open_connections(worker);
    assert!((1..=CONNECTIONS_PER_WORKER).contains(&open), "{open} connections to SV1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_before_the_tls_handshake_are_not_run_as_if_sent_over_it() {
    // libunftp patch 52: a command sent in the same plain-text write as `AUTH TLS` ran, and its
    // reply came over TLS as if the client had sent it there (the plain-text command injection
    // of RFC 4217 §15's kind, CVE-2011-0411 in other servers): pipelined (patch 39), or held
    // behind a starting transfer (patch 51). Nothing after `AUTH TLS` is read until the
    // handshake, and what was read or held before it is dropped.
    let Some(python) = stock_client("python3") else { return };
    let certificate = certificate(&["localhost", "127.0.0.1"]);
    let cluster = TestCluster::start_config(|config| with_tls(config, &certificate, false), |cluster| cluster).await;
    cluster.write_file("f.txt", b"plain");
    let script = format!(
        r#"{prelude}
def session(held):
    s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"USER alice\r\nPASS {password}\r\n")
    codes = [reply(f)[:3], reply(f)[:3]]
    if held:
        s.sendall(b"EPSV\r\n")
        port = int(reply(f).split("|||")[1].split("|")[0])
        s.sendall(b"RETR f.txt\r\nAUTH TLS\r\nMKD injected-held\r\n")
        d = socket.create_connection(("127.0.0.1", port))
        while d.recv(65536):
            pass
    else:
        s.sendall(b"AUTH TLS\r\nMKD injected-pipelined\r\n")
    while codes[-1] != "234":
        codes.append(reply(f)[:3])
    t = context.wrap_socket(s)
    tf = t.makefile("rb")
    # AUTH runs once the download's 150 is out: its 226 comes before 234 or, when the download
    # ends later, over TLS (patch 56).
    if held and "226" not in codes:
        codes.insert(-1, reply(tf)[:3])
    t.sendall(b"PWD\r\n")
    codes.append(reply(tf).strip())
    print(" ".join(codes))
session(True)
session(False)
"#,
        prelude = RAW_TLS_CLIENT_PY,
        port = cluster.main().port(),
        password = PASSWORD
    );
    let (ok, stdout, stderr) = run_stock(&python, &["-c", &script]).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["331 230 150 226 234 257 \"/\"", "331 230 234 257 \"/\""],
        "PWD is the first command run over TLS"
    );
    for name in ["injected-held", "injected-pipelined"] {
        assert!(!cluster.root.path().join(name).exists(), "{name}: MKD sent before the handshake ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tls_as_a_download_ends_gets_its_handshake_and_the_downloads_reply() {
    // libunftp patch 56: after `234` the control loop waited for a message the `AUTH` handler
    // sent from a task of its own before it took the handshake, and a reply of the data channel
    // handled meanwhile (the `226` of a download ending just then) went out in plain text right
    // after `234`, where the client expects to start its handshake: a client that reads the
    // socket byte by byte fails the handshake; Python's buffered reader swallowed the line, and
    // the `226` never came. The loop now takes the handshake right after `234`. Each round sends
    // `AUTH TLS` just before it lets its download end; the `226` must come before `234` or over
    // TLS, once (without the change, a round timed out waiting for it within the first rounds).
    let Some(python) = stock_client("python3") else { return };
    let certificate = certificate(&["localhost", "127.0.0.1"]);
    let cluster = TestCluster::start_config(|config| with_tls(config, &certificate, false), |cluster| cluster).await;
    cluster.write_file("f.bin", &payload(256 * 1024));
    let script = format!(
        r#"{prelude}
outcomes = []
for round in range(40):
    s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"USER alice\r\nPASS {password}\r\nTYPE I\r\nEPSV\r\n")
    reply(f); reply(f); reply(f)
    line = f.readline().decode()
    d = socket.create_connection(("127.0.0.1", int(line.split("|||")[1].split("|")[0])))
    s.sendall(b"RETR f.bin\r\n")
    assert reply(f)[:3] == "150"
    got = 0
    while got < 256 * 1024 - 8192:
        got += len(d.recv(min(65536, 256 * 1024 - 8192 - got)))
    s.sendall(b"AUTH TLS\r\n")
    while True:
        chunk = d.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    d.close()
    codes = []
    while True:
        code = reply(f)[:3]
        codes.append(code)
        if code == "234":
            break
    t = context.wrap_socket(s)
    tf = t.makefile("rb")
    if "226" not in codes:
        codes.append("tls:" + reply(tf)[:3])
    t.sendall(b"PWD\r\n")
    codes.append("tls:" + reply(tf)[:3])
    outcomes.append(" ".join(codes))
    t.close()
print(got)
print("\n".join(sorted(set(outcomes))))
"#,
        prelude = RAW_TLS_CLIENT_PY,
        port = cluster.main().port(),
        password = PASSWORD
    );
    let (ok, stdout, stderr) = run_stock(&python, &["-c", &script]).await;
    assert!(ok, "a round failed (its 226 never came, or the handshake failed): {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("262144"), "the whole download");
    for outcome in lines {
        assert!(
            ["226 234 tls:257", "234 tls:226 tls:257"].contains(&outcome),
            "the download's 226 once, before 234 or over TLS: {outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tls_on_a_secured_control_connection_is_refused_and_the_session_goes_on() {
    // libunftp patch 57: a second `AUTH TLS` got `234` and the server waited for a handshake
    // inside the first, taking the client's next command for one: the session was lost.
    use ftpcalc::cluster::control::Control;
    let certificate = certificate(&["localhost", "127.0.0.1"]);
    let cluster = TestCluster::start_config(|config| with_tls(config, &certificate, false), |cluster| cluster).await;
    let control = Control::connect(cluster.main()).await.expect("connect");
    let (mut control, secured) = control.secure_if_offered().await.expect("AUTH TLS");
    assert!(secured);
    let again = control.command("AUTH TLS").await.expect("AUTH TLS again");
    assert_eq!(again.code, 503, "{}", again.text());
    control.login("alice", PASSWORD).await.expect("login over the one TLS session");
    assert_eq!(control.command("NOOP").await.expect("NOOP").code, 200);
}
