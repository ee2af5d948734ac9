use super::*;

fn entry(name: &str, port: u16, role: Role, services: &[&str]) -> ServerEntry {
    ServerEntry {
        name: name.to_string(),
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        role,
        services: services.iter().map(|service| service.to_string()).collect(),
    }
}

#[test]
fn lookup_and_pick_rotate_over_workers() {
    let registry = Registry::new();
    registry.register(entry("SV0", 2121, Role::Main, &[])).expect("valid");
    registry.register(entry("SV1", 2122, Role::Worker, &["add", "SUB"])).expect("valid");
    registry.register(entry("SV2", 2123, Role::Worker, &["ADD"])).expect("valid");
    assert_eq!(registry.lookup("ADD").len(), 2);
    assert_eq!(registry.lookup("sub")[0].name, "SV1");
    let picked: Vec<String> = (0..4).filter_map(|_| registry.pick("ADD", None)).map(|server| server.name).collect();
    assert_eq!(picked.iter().filter(|name| *name == "SV1").count(), 2);
    assert_eq!(picked.iter().filter(|name| *name == "SV2").count(), 2);
    assert!(registry.pick("MUL", None).is_none());
    assert_eq!(registry.pick("ADD", Some("SV1")).map(|server| server.name), Some("SV2".into()));
    assert_eq!(registry.main().map(|server| server.name), Some("SV0".to_string()));
    assert_eq!(registry.services().into_iter().collect::<Vec<_>>(), vec!["ADD", "SUB"]);
}

#[test]
fn register_replaces_by_name_and_deregister_removes() {
    let registry = Registry::new();
    registry.register(entry("SV1", 2122, Role::Worker, &["ADD"])).expect("valid");
    registry.register(entry("SV1", 2130, Role::Worker, &["MUL"])).expect("valid");
    assert_eq!(registry.servers().len(), 1);
    assert!(registry.pick("ADD", None).is_none());
    assert!(registry.deregister("SV1"));
    assert!(!registry.deregister("SV1"));
    assert!(registry.servers().is_empty());
}

#[test]
fn round_robin_is_per_service() {
    // Issue 9: one counter shared by all services sent every ADD to the same worker when
    // MUL requests were interleaved.
    let registry = Registry::new();
    registry.register(entry("W1", 2122, Role::Worker, &["ADD", "MUL"])).expect("valid");
    registry.register(entry("W2", 2123, Role::Worker, &["ADD", "MUL"])).expect("valid");
    let mut adds = HashMap::new();
    let mut muls = HashMap::new();
    for _ in 0..100 {
        *adds.entry(registry.pick("ADD", None).expect("a worker").name).or_insert(0) += 1;
        *muls.entry(registry.pick("MUL", None).expect("a worker").name).or_insert(0) += 1;
    }
    assert_eq!(adds, HashMap::from([("W1".to_string(), 50), ("W2".to_string(), 50)]));
    assert_eq!(muls, HashMap::from([("W1".to_string(), 50), ("W2".to_string(), 50)]));
}

#[tokio::test(start_paused = true)]
async fn registrations_lapse_and_failed_workers_wait_for_a_sign_of_life() {
    let registry = Registry::new();
    registry.register(entry("SV1", 2122, Role::Worker, &["ADD"])).expect("valid");
    registry.register_for(entry("SV2", 2123, Role::Worker, &["ADD"]), Duration::from_secs(10)).expect("valid");
    assert_eq!(registry.lookup("ADD").len(), 2);
    assert!(registry.mark_failed("SV1"), "first mark");
    assert!(!registry.mark_failed("SV1"), "already marked: nobody else starts a probe");
    assert!((0..4).all(|_| registry.pick("ADD", None).is_some_and(|server| server.name == "SV2")), "SV1 is not picked");
    assert_eq!(registry.lookup("ADD").len(), 2, "a failed worker is still registered");
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(registry.state("SV1").map(|(_, failed)| failed), Some(true), "no pause ends by itself");
    assert_eq!(registry.lookup("ADD").iter().map(|server| server.name.as_str()).collect::<Vec<_>>(), ["SV1"]);
    assert!(registry.pick("ADD", None).is_none(), "SV2 lapsed and SV1 is marked failed");
    registry.mark_healthy("SV1");
    assert_eq!(registry.pick("ADD", None).map(|server| server.name), Some("SV1".into()));
    registry.register_for(entry("SV2", 2123, Role::Worker, &["ADD"]), Duration::from_secs(10)).expect("valid");
    assert!(registry.mark_failed("SV2"));
    registry.register_for(entry("SV2", 2123, Role::Worker, &["ADD"]), Duration::from_secs(10)).expect("valid");
    assert_eq!(registry.state("SV2").map(|(_, failed)| failed), Some(false), "renewal clears the mark");
    assert!(registry.state("NOPE").is_none());
}

#[test]
fn shared_entries_follow_the_shared_registry_and_never_replace_local_servers() {
    let registry = Registry::new();
    registry.register(entry("SV0", 2121, Role::Main, &[])).expect("valid");
    registry.register(entry("LOCAL", 2122, Role::Worker, &["ADD"])).expect("valid");
    registry.upsert_shared(entry("W1", 3001, Role::Worker, &["add"])).expect("valid");
    registry.upsert_shared(entry("W2", 3002, Role::Worker, &["MUL"])).expect("valid");
    registry.upsert_shared(entry("LOCAL", 9999, Role::Worker, &["SUB"])).expect("ignored, not refused");
    registry.upsert_shared(entry("SV0", 9998, Role::Worker, &["SUB"])).expect("ignored, not refused");
    assert_eq!(registry.lookup("ADD").iter().map(|server| server.name.as_str()).collect::<Vec<_>>(), ["LOCAL", "W1"]);
    assert!(registry.lookup("SUB").is_empty(), "a shared entry never replaces a server of this process");
    // A resynchronisation keeps the failure mark of an unchanged entry; a renewal clears it.
    assert!(registry.mark_failed("W1"));
    let refused = registry.replace_shared(vec![
        entry("W1", 3001, Role::Worker, &["ADD"]),
        entry("W3", 3003, Role::Worker, &["INC"]),
        entry("bad name", 1, Role::Worker, &[]),
    ]);
    assert_eq!(refused.len(), 1, "the bad entry is reported");
    assert_eq!(registry.state("W1").map(|(_, failed)| failed), Some(true));
    assert!(registry.state("W2").is_none(), "gone from the shared registry");
    assert!(registry.state("W3").is_some());
    registry.upsert_shared(entry("W1", 3001, Role::Worker, &["ADD"])).expect("valid");
    assert_eq!(registry.state("W1").map(|(_, failed)| failed), Some(false));
    assert!(registry.remove_shared("W3"));
    assert!(!registry.remove_shared("LOCAL"), "only shared entries are removed this way");
    assert!(registry.is_local("LOCAL") && registry.is_local("SV0") && !registry.is_local("W1"));
    assert_eq!(registry.servers().len(), 3);
}

#[test]
fn register_refuses_bad_entries() {
    let registry = Registry::new();
    assert_eq!(
        registry.register(entry("bad name", 1, Role::Worker, &[])),
        Err(RegistryError::InvalidName("bad name".to_string()))
    );
    assert!(registry.register(entry("SV1", 1, Role::Worker, &["A\r\nB"])).is_err());
    let many: Vec<String> = (0..=MAX_SERVICES_PER_SERVER).map(|index| format!("S{index}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(registry.register(entry("SV1", 1, Role::Worker, &many)), Err(RegistryError::TooManyServices));
    for index in 0..MAX_SERVERS {
        registry.register(entry(&format!("W{index}"), 1, Role::Worker, &[])).expect("room left");
    }
    assert_eq!(registry.register(entry("ONE-TOO-MANY", 1, Role::Worker, &[])), Err(RegistryError::Full));
    assert!(registry.servers().iter().all(|server| server.name != "SV1"));
}
