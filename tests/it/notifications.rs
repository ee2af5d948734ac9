//! Our libunftp's data and presence listeners, as a program that embeds libunftp directly sets
//! them (ftpcalc sets none; libunftp patch 35 builds no event without one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use libunftp::notification::{DataEvent, DataListener, EventMeta, PresenceEvent, PresenceListener};

use crate::support::{connect, eventually};

/// Keeps every event it is told of as `sequence user event`.
#[derive(Clone, Debug, Default)]
struct Collector(Arc<Mutex<Vec<String>>>);

impl Collector {
    fn keep(&self, meta: &EventMeta, event: String) {
        self.0.lock().expect("lock").push(format!("{} {} {event}", meta.sequence_number, meta.username));
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

#[async_trait]
impl DataListener for Collector {
    async fn receive_data_event(&self, event: DataEvent, meta: EventMeta) {
        let text = match event {
            DataEvent::Put { path, bytes } => format!("put {path} {bytes}"),
            DataEvent::Got { path, bytes } => format!("got {path} {bytes}"),
            DataEvent::MadeDir { path } => format!("mkdir {path}"),
            DataEvent::Deleted { path } => format!("deleted {path}"),
            other => format!("{other:?}"),
        };
        self.keep(&meta, text);
    }
}

#[async_trait]
impl PresenceListener for Collector {
    async fn receive_presence_event(&self, event: PresenceEvent, meta: EventMeta) {
        self.keep(&meta, format!("{event:?}"));
    }
}

/// A bare libunftp server on the file system at `root`, for one connection, telling `data` and
/// (if given) `presence` what happens; its address.
async fn serve_one(root: &std::path::Path, data: Collector, presence: Option<Collector>) -> std::net::SocketAddr {
    let root = root.to_path_buf();
    let mut builder = libunftp::ServerBuilder::new(Box::new(move || {
        unftp_sbe_fs::Filesystem::new(root.clone()).expect("the folder opens")
    }))
    .notify_data(data);
    if let Some(presence) = presence {
        builder = builder.notify_presence(presence);
    }
    let server = builder.build().expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = server.service(stream).await;
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_listener_and_a_presence_listener_hear_every_event_in_order() {
    let folder = tempfile::tempdir().expect("folder");
    let (data, presence) = (Collector::default(), Collector::default());
    let address = serve_one(folder.path(), data.clone(), Some(presence.clone())).await;
    let mut ftp = connect(address).await;
    let mut contents: &[u8] = b"twelve bytes";
    ftp.put_file("f.txt", &mut contents).await.expect("STOR");
    let got = crate::support::download(&mut ftp, "f.txt").await;
    assert_eq!(got, b"twelve bytes");
    ftp.mkdir("d").await.expect("MKD");
    ftp.rm("f.txt").await.expect("DELE");
    ftp.quit().await.expect("QUIT");
    let heard = eventually(Duration::from_secs(10), async || presence.events().len() == 2).await;
    assert!(heard, "logged in and out: {:?}", presence.events());
    assert_eq!(presence.events(), ["1 tester LoggedIn", "6 tester LoggedOut"]);
    assert_eq!(
        data.events(),
        ["2 tester put /f.txt 12", "3 tester got /f.txt 12", "4 tester mkdir /d", "5 tester deleted /f.txt"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_listener_alone_hears_the_data_events() {
    let folder = tempfile::tempdir().expect("folder");
    let data = Collector::default();
    let address = serve_one(folder.path(), data.clone(), None).await;
    let mut ftp = connect(address).await;
    let mut contents: &[u8] = b"abc";
    ftp.put_file("g.txt", &mut contents).await.expect("STOR");
    ftp.quit().await.expect("QUIT");
    let heard = eventually(Duration::from_secs(10), async || !data.events().is_empty()).await;
    assert!(heard, "no event");
    // The sequence counts the presence events too, told to nobody.
    assert_eq!(data.events(), ["2 tester put /g.txt 3"]);
}
