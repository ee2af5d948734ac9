use super::*;

fn parse(text: &str) -> Result<ConfigFile, String> {
    ConfigFile::parse(text, Path::new("test.toml"), Path::new("/etc/ftpcalc")).map_err(|error| error.to_string())
}

#[test]
fn a_full_file_applies_every_key() {
    let hash = crate::accounts::password::hash("pw").expect("hash");
    let text = format!(
        r#"
listen = "127.0.0.1:2200"
passive_ports = "40000-40009"
no_clobber = true
secret_file = "secret"
[[users]]
name = "alice"
password = "{hash}"
home = "alice"
permissions = ["list", "download", "upload"]
services = ["ADD"]
[anonymous]
permissions = ["list", "download"]
[tls]
cert = "server.pem"
key = "/keys/server.key"
required = true
[limits]
max_connections = 100
max_connections_per_ip = 5
max_transfers = 7
failed_logins = 3
lockout_seconds = 60
login_timeout_seconds = 10
idle_timeout_seconds = 20
[registry]
endpoints = ["127.0.0.1:2379", "etcd://etcd-2.example:2379"]
[proxy]
protocol = true
"#
    );
    let file = parse(&text).expect("valid");
    let mut options = ServerOptions::default();
    file.apply(&mut options, Path::new("test.toml")).expect("applies");
    assert_eq!(file.listen, Some("127.0.0.1:2200".parse().expect("literal")));
    assert_eq!(options.passive_ports, Some(40000..=40009));
    assert!(options.no_clobber);
    assert_eq!(file.secret_path(), Some(PathBuf::from("/etc/ftpcalc/secret")));
    let access = &options.access;
    assert_eq!(access.users.len(), 1);
    assert!(access.users[0].services.allows("ADD") && !access.users[0].services.allows("MUL"));
    assert!(access.anonymous.is_some());
    let tls = access.tls.as_ref().expect("tls");
    assert_eq!(
        tls.source,
        TlsSource::Files { certificates: "/etc/ftpcalc/server.pem".into(), key: "/keys/server.key".into() }
    );
    assert!(tls.required);
    assert_eq!(access.limits.max_connections_per_ip, 5);
    assert_eq!(access.limits.max_transfers, 7);
    assert_eq!(access.limits.login_timeout, Duration::from_secs(10));
    assert_eq!(options.registry, ["127.0.0.1:2379", "etcd-2.example:2379"]);
    assert!(options.proxy_protocol);
}

#[test]
fn bad_files_are_refused_with_the_place_and_the_reason() {
    let cases = [
        ("listen = 5", "invalid type"),
        ("colour = \"blue\"", "unknown field `colour`"),
        ("[limits]\nmax_connectons = 5", "unknown field `max_connectons`"),
        ("[limits]\nmax_connections = 0", "max_connections must be at least 1"),
        ("[limits]\nmax_transfers = 0", "max_transfers must be at least 1"),
        ("[limits]\nmax_transfers = -1", "invalid value"),
        ("[limits]\nmax_transfers = \"many\"", "invalid type"),
        ("[limits]\nmax_transfer = 5", "unknown field `max_transfer`"),
        ("[limits]\nlockout_seconds = 99999999999", "over a year"),
        ("passive_ports = \"9-1\"", "passive_ports"),
        ("[[users]]\nname = \"bob\"\npassword = \"hunter2\"", "not a password hash"),
        ("[[users]]\nname = \"bob\"", "missing field `password`"),
        ("[anonymous]\npermissions = [\"fly\"]", "unknown permission \"fly\""),
        ("[anonymous]\nhome = \"../etc\"", "relative path inside the FTP folder"),
        ("[tls]\ncert = \"a.pem\"", "needs cert and key"),
        ("[tls]\nself_signed = true\ncert = \"a\"\nkey = \"b\"", "not both"),
        ("not toml at all", "test.toml"),
        ("[registry]\nendpoints = []", "no etcd endpoint"),
        ("[registry]\nendpoints = [\"localhost\"]", "bad etcd endpoint \"localhost\""),
        ("[registry]\nendpoints = [\"h:1 2\"]", "bad etcd endpoint"),
        ("[registry]\nendpoint = [\"h:1\"]", "unknown field `endpoint`"),
        ("[proxy]\nprotocol = \"yes\"", "invalid type"),
    ];
    for (text, expected) in cases {
        let error = parse(text).expect_err(text);
        assert!(error.contains(expected) && error.contains("test.toml"), "{text:?}: {error}");
    }
}

#[test]
fn an_empty_file_is_open_mode_with_the_defaults() {
    let file = parse("").expect("valid");
    let mut options = ServerOptions::default();
    file.apply(&mut options, Path::new("test.toml")).expect("applies");
    assert!(options.access.users.is_empty() && options.access.anonymous.is_none());
    assert_eq!(options.access.limits, Limits::default());
}

#[test]
fn port_ranges_parse() {
    assert_eq!(parse_port_range("40000-40999"), Ok(40000..=40999));
    for bad in ["", "1", "0-5", "9-1", "a-b", "1-70000"] {
        assert!(parse_port_range(bad).is_err(), "{bad}");
    }
}
