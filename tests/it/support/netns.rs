//! Test hosts: network namespaces with a veth pair, for clients and servers that must not be on
//! loopback (open mode, TLS required, workers on other hosts).

/// A network namespace with a veth pair: `host` (our side) and `guest` (inside) addresses.
pub struct TestHost {
    /// The namespace's name, for `ip netns exec`.
    pub namespace: String,
    /// Our side's address.
    pub host: String,
    /// The address inside the namespace.
    pub guest: String,
}

impl TestHost {
    /// Creates the namespace, or says why it cannot (not root, no `ip`, no permission).
    pub fn create(index: u32) -> Result<TestHost, String> {
        let id = std::process::id() % 10_000;
        let namespace = format!("ftpcalc-{id}-{index}");
        let subnet = format!("10.251.{}", (id * 8 + index) % 250);
        let (outside, inside) = (format!("fc{id}o{index}"), format!("fc{id}i{index}"));
        let host = TestHost { namespace: namespace.clone(), host: format!("{subnet}.1"), guest: format!("{subnet}.2") };
        let steps: Vec<Vec<String>> = [
            format!("netns add {namespace}"),
            format!("link add {outside} type veth peer name {inside}"),
            format!("link set {inside} netns {namespace}"),
            format!("addr add {}/24 dev {outside}", host.host),
            format!("link set {outside} up"),
            format!("-n {namespace} addr add {}/24 dev {inside}", host.guest),
            format!("-n {namespace} link set {inside} up"),
            format!("-n {namespace} link set lo up"),
        ]
        .iter()
        .map(|step| step.split(' ').map(str::to_string).collect())
        .collect();
        for step in steps {
            let output =
                std::process::Command::new("ip").args(&step).output().map_err(|error| format!("ip: {error}"))?;
            if !output.status.success() {
                return Err(format!("ip {}: {}", step.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
            }
        }
        Ok(host)
    }
}

impl TestHost {
    /// The namespace number `index` (below 8, one per test), or `None` with a notice when
    /// namespaces cannot be made here; under `CI=true` that fails the test.
    pub fn create_or_skip(index: u32) -> Option<TestHost> {
        match TestHost::create(index) {
            Ok(host) => Some(host),
            Err(error) => {
                assert!(
                    std::env::var("CI").map_or(true, |value| value != "true"),
                    "CI=true needs network namespaces: {error}"
                );
                eprintln!("NOTICE: cannot create network namespaces ({error}); skipping this test");
                None
            }
        }
    }

    /// `ip netns exec NAMESPACE`, to put before a command.
    pub fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", self.namespace.as_str()]
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair too.
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.namespace]).output();
    }
}
