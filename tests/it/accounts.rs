//! Accounts (issue 10): passwords, anonymous read-only, homes, permissions, service grants, the
//! lockout, the cluster's own logins, and the configuration file and `hash-password` as a user
//! of the binary meets them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ftpcalc::accounts::password;
use ftpcalc::accounts::{Account, AnonymousPolicy, Permissions, ServiceGrant};
use ftpcalc::ClusterConfig;
use suppaftp::tokio::AsyncFtpStream;

use crate::support::{connect_as, run_ftpcalc, site, RawFtp, TestCluster};

/// One Argon2id hash per password, made once for all the tests here.
fn hashed(password: &str) -> String {
    static HASHES: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> = OnceLock::new();
    let hashes = HASHES.get_or_init(Default::default);
    let mut hashes = hashes.lock().expect("lock");
    hashes.entry(password.to_string()).or_insert_with(|| password::hash(password).expect("hash")).clone()
}

fn account(name: &str, home: Option<&str>, permissions: &[&str], services: &[&str]) -> Account {
    let words = |list: &[&str]| list.iter().map(|word| word.to_string()).collect::<Vec<_>>();
    Account {
        name: name.into(),
        password: hashed(&format!("{name}-password")),
        home: home.map(PathBuf::from),
        permissions: Permissions::parse(&words(permissions)).expect("permissions"),
        services: ServiceGrant::parse(&words(services)).expect("services"),
    }
}

/// alice and bob with homes of their own and every permission; carol at the root who may only
/// list, download and upload, and call ADD; anonymous read-only.
fn with_accounts(mut config: ClusterConfig) -> ClusterConfig {
    let access = &mut config.options.access;
    access.users = vec![
        account("alice", Some("alice"), &["all"], &["*"]),
        account("bob", Some("bob"), &["all"], &["*"]),
        account("carol", None, &["list", "download", "upload"], &["ADD"]),
    ];
    access.anonymous = Some(AnonymousPolicy {
        home: None,
        permissions: Permissions::parse(&["list".into(), "download".into()]).expect("valid"),
        services: ServiceGrant::All,
    });
    config
}

async fn cluster_with_accounts(change: impl FnOnce(&mut ClusterConfig)) -> TestCluster {
    TestCluster::start_config(
        |config| {
            let mut config = with_accounts(config);
            change(&mut config);
            config
        },
        |cluster| cluster,
    )
    .await
}

/// Downloads `path`, or `None` if any step of the transfer is refused.
async fn fetch(ftp: &mut AsyncFtpStream, path: &str) -> Option<Vec<u8>> {
    let mut stream = ftp.retr_as_stream(path).await.ok()?;
    let mut data = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut data).await;
    let finished = stream.finish().await;
    (read.is_ok() && finished.is_ok()).then_some(data)
}

async fn login(cluster: &TestCluster, user: &str) -> AsyncFtpStream {
    let mut ftp = connect_as(cluster.main(), user, &format!("{user}-password")).await;
    ftp.transfer_type(suppaftp::types::FileType::Binary).await.expect("TYPE I");
    ftp
}

/// Seconds one fresh connection takes to be refused as `user` with `password`, and the reply.
async fn refused_after(cluster: &TestCluster, user: &str, password: &str) -> (Duration, (u32, String)) {
    let (mut raw, _) = RawFtp::connect(cluster.main()).await;
    let started = Instant::now();
    let reply = raw.log_in_as(user, password).await;
    (started.elapsed(), reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_look_and_last_the_same() {
    let cluster = cluster_with_accounts(|config| config.options.access.limits.failed_logins = 100).await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        let (took, reply) = refused_after(&cluster, "alice", "not-her-password").await;
        assert_eq!(reply.0, 530, "{}", reply.1);
        wrong.push((took, reply.1));
        let (took, reply) = refused_after(&cluster, "mallory", "anything").await;
        assert_eq!(reply.0, 530, "{}", reply.1);
        unknown.push((took, reply.1));
    }
    assert_eq!(wrong[0].1, unknown[0].1, "the same words");
    let median = |runs: &mut Vec<(Duration, String)>| {
        runs.sort();
        runs[1].0.as_secs_f64()
    };
    let (wrong, unknown) = (median(&mut wrong), median(&mut unknown));
    assert!(wrong >= 1.0 && unknown >= 1.0, "every refusal waits a second: {wrong} {unknown}");
    assert!((wrong - unknown).abs() < 0.25 * wrong.max(unknown), "the same time: {wrong:.3} s and {unknown:.3} s");
    let mut alice = login(&cluster, "alice").await;
    alice.pwd().await.expect("logged in with the right password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_login_commands_are_answered_before_a_login_and_the_login_holds_after() {
    // libunftp patch 34 remembers that a session logged in instead of looking at every command.
    let cluster = cluster_with_accounts(|config| config.options.access.limits.failed_logins = 100).await;
    let (mut raw, _) = RawFtp::connect(cluster.main()).await;
    for line in ["PWD", "CWD /", "RETR a.txt", "PASV", "SIZE a.txt", "SITE ADD 2 3"] {
        assert_eq!(raw.command(line).await.0, 530, "{line} before any login");
    }
    assert_eq!(raw.command("NOOP").await.0, 200, "NOOP needs no login");
    assert_eq!(raw.log_in_as("alice", "not-her-password").await.0, 530);
    assert_eq!(raw.command("PWD").await.0, 530, "after a refused login");
    assert_eq!(raw.log_in_as("alice", "alice-password").await.0, 230);
    assert_eq!(raw.command("PWD").await.0, 257);
    assert_eq!(raw.command("USER bob").await.0, 503, "no switching users within a session");
    let (code, text) = raw.command("STAT").await;
    assert_eq!(code, 211, "{text}");
    assert!(text.contains("Logged in as: alice"), "still alice's session: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sessions_read_and_change_nothing() {
    let cluster = cluster_with_accounts(|_| {}).await;
    cluster.write_file("notes.txt", b"the original");
    let mut ftp = connect_as(cluster.main(), "anonymous", "me@example.org").await;
    ftp.transfer_type(suppaftp::types::FileType::Binary).await.expect("TYPE I");
    assert_eq!(fetch(&mut ftp, "notes.txt").await.as_deref(), Some(&b"the original"[..]));
    assert!(ftp.put_file("notes.txt", &mut &b"vandalised"[..]).await.is_err(), "STOR over a file");
    assert!(ftp.put_file("new.txt", &mut &b"graffiti"[..]).await.is_err(), "STOR of a new name");
    assert!(ftp.rm("notes.txt").await.is_err(), "DELE");
    assert!(ftp.mkdir("tags").await.is_err(), "MKD");
    assert!(ftp.rename("notes.txt", "moved.txt").await.is_err(), "RNFR/RNTO");
    assert_eq!(std::fs::read(cluster.root.path().join("notes.txt")).expect("file"), b"the original");
    let mut names = crate::support::names_in(cluster.root.path());
    names.retain(|name| !["alice", "bob"].contains(&name.as_str()));
    assert_eq!(names, ["notes.txt"], "nothing was made");
    assert_eq!(site(&mut ftp, "ADD 1 2").await.0, 200, "services are allowed to anonymous here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_live_in_their_homes_and_cannot_leave_them() {
    let cluster = cluster_with_accounts(|_| {}).await;
    let mut alice = login(&cluster, "alice").await;
    alice.put_file("diary.txt", &mut &b"dear diary"[..]).await.expect("STOR");
    assert_eq!(std::fs::read(cluster.root.path().join("alice/diary.txt")).expect("in her home"), b"dear diary");
    let mut bob = login(&cluster, "bob").await;
    assert!(bob.nlst(None).await.expect("NLST").is_empty(), "bob sees only his home");
    let outside = tempfile::tempdir().expect("folder");
    std::fs::write(outside.path().join("secret.txt"), b"secret").expect("write");
    std::os::unix::fs::symlink(cluster.root.path().join("alice"), cluster.root.path().join("bob/to-alice"))
        .expect("symlink");
    std::os::unix::fs::symlink(outside.path(), cluster.root.path().join("bob/to-outside")).expect("symlink");
    for path in
        ["/alice/diary.txt", "../alice/diary.txt", "/../alice/diary.txt", "to-alice/diary.txt", "to-outside/secret.txt"]
    {
        assert_eq!(fetch(&mut bob, path).await, None, "bob fetched {path}");
    }
    assert!(bob
        .list(Some("../alice"))
        .await
        .map_or(true, |listing| listing.iter().all(|line| !line.contains("diary"))));
    bob.cwd("..").await.ok();
    assert_eq!(bob.pwd().await.expect("PWD"), "/", "the top of his home is the top");
    assert_eq!(bob.nlst(None).await.expect("NLST").len(), 2, "still his own two links");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_are_checked_for_every_operation() {
    let cluster = cluster_with_accounts(|_| {}).await;
    let mut carol = login(&cluster, "carol").await;
    carol.put_file("mine.txt", &mut &b"first"[..]).await.expect("upload is allowed");
    assert!(carol.put_file("mine.txt", &mut &b"second"[..]).await.is_err(), "overwrite is not");
    assert_eq!(std::fs::read(cluster.root.path().join("mine.txt")).expect("file"), b"first");
    assert_eq!(site(&mut carol, "NOCLOBBER ON").await.0, 200);
    carol.put_file("mine.txt", &mut &b"second"[..]).await.expect("a no-clobber copy is a new file");
    assert_eq!(site(&mut carol, "STORED").await, (200, "/mine_copy1.txt".to_string()));
    let refused = carol.rm("mine.txt").await.expect_err("delete");
    assert!(refused.to_string().contains("carol has no delete permission"), "{refused}");
    assert!(carol.mkdir("folder").await.is_err(), "mkdir");
    assert!(carol.rename("mine.txt", "yours.txt").await.is_err(), "rename");
    assert!(cluster.root.path().join("mine.txt").exists() && !cluster.root.path().join("folder").exists());
    let (code, text) = site(&mut carol, "MUL 6 7").await;
    assert_eq!((code, text.as_str()), (550, "carol may not use MUL"));
    assert_eq!(site(&mut carol, "ADD 6 7").await, (200, "13 (computed by SV1)".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_logins_lock_an_address_while_another_address_logs_in() {
    let cluster = cluster_with_accounts(|config| config.options.access.limits.lockout = Duration::from_secs(60)).await;
    let (mut raw, _) = RawFtp::connect(cluster.main()).await;
    for _ in 0..5 {
        assert_eq!(raw.log_in_as("alice", "guess").await.0, 530);
    }
    assert_eq!(raw.log_in_as("alice", "alice-password").await.0, 530, "locked: the right password is refused too");
    let (mut again, greeting) = RawFtp::connect(cluster.main()).await;
    assert_eq!(greeting.0, 421, "new connections are refused at once: {}", greeting.1);
    assert!(greeting.1.contains("too many failed logins"), "{}", greeting.1);
    assert!(again.closed().await);
    let (mut other, greeting) = RawFtp::connect_from(IpAddr::from([127, 0, 0, 2]), cluster.main()).await;
    assert_eq!(greeting.0, 220);
    assert_eq!(other.log_in_as("alice", "alice-password").await.0, 230, "127.0.0.2 is not locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_right_logins_at_once_from_one_address_all_get_in_and_parallel_guesses_stay_bounded() {
    // Attempts in flight counted as failures, so a client opening more connections at once
    // than `failed_logins` (rclone's parallel transfers) was told "too many failed logins".
    let cluster = cluster_with_accounts(|config| config.options.access.limits.lockout = Duration::from_secs(60)).await;
    let main = cluster.main();
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..16 {
        logins.spawn(async move {
            let (mut raw, _) = RawFtp::connect(main).await;
            raw.log_in_as("alice", "alice-password").await
        });
    }
    while let Some(outcome) = logins.join_next().await {
        let (code, text) = outcome.expect("login task");
        assert_eq!(code, 230, "{text}");
    }
    // Sixteen wrong guesses at once from another address: five are checked, then it is locked.
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..16 {
        guesses.spawn(async move {
            let (mut raw, greeting) = RawFtp::connect_from(IpAddr::from([127, 0, 0, 3]), main).await;
            if greeting.0 != 220 {
                return greeting;
            }
            raw.log_in_as("bob", "guess").await
        });
    }
    let mut refused = Vec::new();
    while let Some(outcome) = guesses.join_next().await {
        refused.push(outcome.expect("guess task"));
    }
    assert!(refused.iter().all(|(code, _)| *code == 530 || *code == 421), "{refused:?}");
    let locked = refused.iter().filter(|(_, text)| text.contains("too many failed logins")).count();
    assert!(locked >= 11, "at most five guesses were checked: {refused:?}");
    let (_, greeting) = RawFtp::connect_from(IpAddr::from([127, 0, 0, 3]), main).await;
    assert_eq!(greeting.0, 421, "127.0.0.3 is locked: {}", greeting.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registration_proofs_count_as_failed_logins() {
    let secret = ftpcalc::ClusterSecret::new("test-secret-0123456789").expect("long enough");
    let cluster = TestCluster::start_config(
        |mut config| {
            config.secret = Some(secret.clone());
            config
        },
        |cluster| cluster,
    )
    .await;
    let mut raw = RawFtp::login(cluster.main()).await;
    let request = "REGISTER W9 127.0.0.1:9 ADD";
    for _ in 0..5 {
        raw.command("SITE CHALLENGE").await;
        assert_eq!(raw.command(&format!("SITE {request} 00ff")).await.0, 530);
    }
    let (code, challenge) = raw.command("SITE CHALLENGE").await;
    assert_eq!(code, 200);
    let proof = secret.proof(challenge.trim_start_matches("200 "), request);
    let (code, text) = raw.command(&format!("SITE {request} {proof}")).await;
    assert_eq!(code, 530, "locked out, even with the right proof: {text}");
    assert!(text.contains("too many failed proofs"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_logins_hold_only_for_the_connection_whose_nonce_they_sign() {
    let secret = ftpcalc::ClusterSecret::new("test-secret-0123456789").expect("long enough");
    let cluster = TestCluster::start_config(
        |mut config| {
            config.secret = Some(secret.clone());
            with_accounts(config)
        },
        |cluster| cluster,
    )
    .await;
    let worker = cluster.address("SV1");
    let (mut first, greeting) = RawFtp::connect(worker).await;
    let nonce = greeting.1.split("nonce=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("a nonce");
    let proof = secret.login_proof(nonce);
    assert_eq!(first.log_in_as(ftpcalc::protocol::CLUSTER_USER, &proof).await.0, 230);
    assert_eq!(first.command("SITE MUL 6 7").await.0, 504, "a cluster login may call services (SV1 offers ADD only)");
    let _data = first.passive(worker).await;
    let (mut code, _) = first.command("NLST").await;
    if code == 150 {
        code = first.reply().await.0;
    }
    assert_eq!(code, 550, "but may not touch files");
    let (mut replayed, _) = RawFtp::connect(worker).await;
    assert_eq!(replayed.log_in_as(ftpcalc::protocol::CLUSTER_USER, &proof).await.0, 530, "a replayed proof");
    let (mut guessed, _) = RawFtp::connect(worker).await;
    assert_eq!(guessed.log_in_as(ftpcalc::protocol::CLUSTER_USER, "00").await.0, 530);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_from_hash_password_in_a_config_file_lets_its_user_in() {
    let (code, phc, stderr) = run_ftpcalc(&["hash-password"], "s3cret-password\n", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let phc = phc.trim().to_string();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(!phc.contains("s3cret"));
    assert_eq!(run_ftpcalc(&["hash-password"], "\n", &[]).0, Some(2), "an empty password is refused");

    let settings = tempfile::tempdir().expect("folder");
    let config = settings.path().join("ftpcalc.toml");
    std::fs::write(&config, format!("[[users]]\nname = \"dora\"\npassword = \"{phc}\"\n")).expect("write");
    let root = tempfile::tempdir().expect("folder");
    let config_text = config.to_str().expect("utf-8");
    let root_text = root.path().to_str().expect("utf-8");
    let server = crate::support::Process::start(
        &[],
        &["server", "SV0", root_text, "--listen", "127.0.0.1:0", "--no-workers", "--config", config_text],
    );
    let address = server.address_from_table();
    let (mut raw, _) = RawFtp::connect(address).await;
    assert_eq!(raw.log_in_as("dora", "s3cret-password").await.0, 230);
    let (mut raw, _) = RawFtp::connect(address).await;
    assert_eq!(raw.log_in_as("dora", "s3cret").await.0, 530);

    // The client finds its password in each of the places it looks.
    let home = tempfile::tempdir().expect("folder");
    std::fs::write(home.path().join(".netrc"), "machine 127.0.0.1 login dora password s3cret-password\n")
        .expect("write");
    let server_text = address.to_string();
    let local = tempfile::tempdir().expect("folder");
    let local_text = local.path().to_str().expect("utf-8");
    let base = ["client", "dora", local_text, "--server", server_text.as_str()];
    let with = |extra: &[&'static str]| base.iter().chain(extra).map(|word| word.to_string()).collect::<Vec<String>>();
    let (code, out, err) = run_ftpcalc(&with(&["--password", "s3cret-password", "add", "2", "3"]), "", &[]);
    assert_eq!((code, out.trim()), (Some(1), ""), "no worker, but the login worked: {err}");
    assert!(err.contains("451"), "{err}");
    let (code, _, err) = run_ftpcalc(&with(&["info"]), "", &[("FTPCALC_PASSWORD", "s3cret-password")]);
    assert_eq!(code, Some(0), "{err}");
    let home_text = home.path().to_str().expect("utf-8");
    let (code, _, err) = run_ftpcalc(&with(&["info"]), "", &[("HOME", home_text)]);
    assert_eq!(code, Some(0), "the password from ~/.netrc: {err}");
    let (code, _, err) = run_ftpcalc(&with(&["--password", "wrong", "info"]), "", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refused the login as dora"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_file_is_refused_with_its_name_and_line() {
    let settings = tempfile::tempdir().expect("folder");
    let config = settings.path().join("bad.toml");
    std::fs::write(&config, "[limits]\nmax_connections = \"many\"\n").expect("write");
    let config_text = config.to_str().expect("utf-8");
    let root = tempfile::tempdir().expect("folder");
    let (code, _, stderr) =
        run_ftpcalc(&["server", "SV0", root.path().to_str().expect("utf-8"), "--config", config_text], "", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml") && stderr.contains("line 2"), "{stderr}");
    let (code, _, stderr) =
        run_ftpcalc(&["server", "SV0", root.path().to_str().expect("utf-8"), "--config", "/nonexistent.toml"], "", &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
}
