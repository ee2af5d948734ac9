//! What a distribution ships (issue 12): the systemd unit that `systemd-analyze verify`
//! accepts, manual pages that match the command line and render without warnings, shell
//! completions that parse, and clear errors for the new flags and keys.

use std::path::{Path, PathBuf};

use crate::support::{loopback, run_ftpcalc, run_stock, stock_client};

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging")
}

/// The manual pages as the binary writes them now, in `dir/man1`.
fn generated_pages(dir: &Path) -> PathBuf {
    let man1 = dir.join("man1");
    std::fs::create_dir_all(&man1).expect("mkdir");
    let (code, _, stderr) = run_ftpcalc(&["man", man1.to_str().expect("utf-8")], "", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    man1
}

#[tokio::test]
async fn the_manual_pages_are_current_and_render_without_warnings() {
    let folder = tempfile::tempdir().expect("folder");
    let man1 = generated_pages(folder.path());
    let mut names: Vec<String> = std::fs::read_dir(&man1)
        .expect("pages")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"ftpcalc.1".to_string()) && names.contains(&"ftpcalc-server.1".to_string()), "{names:?}");
    for name in &names {
        let checked_in = std::fs::read_to_string(packaging().join("man").join(name)).unwrap_or_default();
        let current = std::fs::read_to_string(man1.join(name)).expect("page");
        assert!(
            checked_in == current,
            "packaging/man/{name} is out of date: run `cargo run -- man packaging/man` and commit it"
        );
    }
    assert_eq!(std::fs::read_dir(packaging().join("man")).expect("packaging/man").count(), names.len());
    let server_page = std::fs::read_to_string(man1.join("ftpcalc-server.1")).expect("page");
    assert!(server_page.contains("metrics") && server_page.contains("transfer\\-log"), "every flag is documented");
    let Some(groff) = stock_client("groff") else { return };
    for name in &names {
        let page = man1.join(name);
        let (ok, _, stderr) = run_stock(&groff, &["-man", "-Tutf8", "-ww", "-z", page.to_str().expect("utf-8")]).await;
        assert!(ok && stderr.is_empty(), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn the_systemd_unit_passes_systemd_analyze_verify_and_is_sandboxed() {
    let Some(analyze) = stock_client("systemd-analyze") else { return };
    let folder = tempfile::tempdir().expect("folder");
    // The unit names /usr/bin/ftpcalc and its manual pages: point them at this build.
    let unit = std::fs::read_to_string(packaging().join("ftpcalc.service")).expect("the unit");
    let unit = unit.replace("/usr/bin/ftpcalc", env!("CARGO_BIN_EXE_ftpcalc"));
    let unit_path = folder.path().join("ftpcalc.service");
    std::fs::write(&unit_path, unit).expect("write");
    let man = generated_pages(&folder.path().join("man"));
    let manpath = man.parent().expect("a parent").to_str().expect("utf-8").to_string();
    let script = format!(
        "MANPATH={manpath} {} verify {} && {} security --offline=yes {}",
        analyze.display(),
        unit_path.display(),
        analyze.display(),
        unit_path.display()
    );
    let (ok, stdout, stderr) = run_stock(Path::new("/bin/sh"), &["-c", &script]).await;
    assert!(ok && stderr.trim().is_empty(), "{stdout}{stderr}");
    let exposure: f64 = stdout
        .lines()
        .find_map(|line| line.split("Overall exposure level for ftpcalc.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {stdout}"));
    assert!(exposure <= 2.0, "exposure {exposure} (systemd calls up to 2.0 'OK')");
    let sysusers = std::fs::read_to_string(packaging().join("ftpcalc.sysusers")).expect("sysusers");
    assert!(sysusers.lines().any(|line| line.starts_with("u ftpcalc ")), "{sysusers}");
}

#[tokio::test]
async fn completions_parse_and_a_bad_shell_is_refused() {
    let (code, script, stderr) = run_ftpcalc(&["completions", "bash"], "", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(script.contains("ftpcalc") && script.contains("--transfer-log"), "{script}");
    let folder = tempfile::tempdir().expect("folder");
    let path = folder.path().join("ftpcalc.bash");
    std::fs::write(&path, &script).expect("write");
    let (ok, _, stderr) = run_stock(Path::new("/bin/bash"), &["-n", path.to_str().expect("utf-8")]).await;
    assert!(ok, "bash -n: {stderr}");
    let (code, _, stderr) = run_ftpcalc(&["completions", "tcsh"], "", &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid value 'tcsh'"), "{stderr}");
}

#[tokio::test]
async fn bad_metrics_log_and_transfer_log_settings_are_refused_clearly() {
    let root = tempfile::tempdir().expect("folder");
    let root_text = root.path().to_str().expect("utf-8");
    let server = |extra: &[&str]| {
        let mut args = vec!["server", "SV0", root_text, "--listen", "127.0.0.1:0", "--no-workers"];
        args.extend_from_slice(extra);
        run_ftpcalc(&args, "", &[])
    };
    let (code, _, stderr) = server(&["--metrics", "localhost"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--metrics"), "{stderr}");
    let (code, _, stderr) = server(&["--log-format", "xml"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid value 'xml'"), "{stderr}");
    let (code, _, stderr) = server(&["--transfer-log", "/nonexistent/folder/xferlog"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot open the transfer log") && stderr.contains("/nonexistent/folder/xferlog"),
        "{stderr}"
    );
    let taken = std::net::TcpListener::bind(loopback(0)).expect("bind");
    let taken_address = taken.local_addr().expect("address").to_string();
    let (code, _, stderr) = server(&["--metrics", &taken_address]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains(&format!("the metrics endpoint cannot listen on {taken_address}")), "{stderr}");

    let settings = tempfile::tempdir().expect("folder");
    for (text, expected) in [
        ("[metrics]\nlisten = \"everywhere\"\n", "line 2"),
        ("[metrics]\nport = 9121\n", "unknown field `port`"),
        ("transfer_log = \"\"\n", "transfer_log is empty"),
    ] {
        let config = settings.path().join("ops.toml");
        std::fs::write(&config, text).expect("write");
        let (code, _, stderr) = server(&["--config", config.to_str().expect("utf-8")]);
        assert_eq!(code, Some(2), "{text}");
        assert!(stderr.contains("ops.toml") && stderr.contains(expected), "{text}: {stderr}");
    }
}
