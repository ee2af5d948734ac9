//! The session module implements per-connection session handling and currently also
//! implements the handling for the *data* channel.

use super::tls::FtpsConfig;
use crate::metrics;
use crate::server::chancomms::{DataChanCmd, TransferCmd};
use crate::server::chancomms::TransferSender;
use crate::server::failed_logins::FailedLoginsCache;
use crate::server::switchboard::SocketAddrPair;
use crate::server::switchboard::SwitchboardKey;
use std::{
    fmt::{Debug, Formatter},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
};
use tokio::sync::mpsc::{Receiver, Sender};
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

// TraceId is an identifier used to correlate logs statements together.
#[derive(PartialEq, Eq, Copy, Clone)]
pub struct TraceId(u64);

impl TraceId {
    pub fn new() -> Self {
        let mut id = [0; 8];
        // For now keep it simple. Later we may need something more sophisticated
        getrandom::fill(&mut id).expect("Error generating random TraceId");

        TraceId(u64::from_ne_bytes(id))
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut Formatter) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut Formatter) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[derive(PartialEq, Eq, Debug, Clone, Copy)]
pub enum SessionState {
    New,
    WaitPass,
    WaitCmd,
}

// The session shared via an asynchronous lock
pub type SharedSession<S, U> = Arc<tokio::sync::Mutex<Session<S, U>>>;

/// Every place for a data connection is taken (see `ServerBuilder::data_connection_limit`).
#[derive(Debug)]
pub(crate) struct NoPlaceLeft;

/// The reply to a `PASV`, `EPSV`, `PORT` or `EPRT` refused for want of a place.
pub(crate) const NO_PLACE_LEFT: &str = "Too many data connections at once; try again later";

/// Most places one session holds at once: a transfer under way and the listener (or active
/// connection) set up for the next one. Without it one client could take every place.
pub(crate) const PLACES_PER_SESSION: usize = 2;

/// A data connection's place (see `ServerBuilder::data_connection_limit`): one of the server's,
/// counted in its session's too; both come free when it is dropped.
#[derive(Debug)]
pub(crate) struct Place {
    _permit: tokio::sync::OwnedSemaphorePermit,
    held: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.held.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

// This is where we keep the state for an ftp session.
#[derive(Debug)]
pub struct Session<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    // I guess this can be called session_id but for now we only use it to have traceability in our
    // logs. Rename it if you use it for more than than but then also make sure the TraceId
    // implementation makes sense.
    pub trace_id: TraceId,
    // This is extra information about a user like account details.
    pub user: Arc<Option<User>>,
    // The username used to log in. None if not logged in.
    pub username: Option<String>,
    // The storage back-end instance.
    pub storage: Arc<Storage>,
    // The control loop uses this to send commands to the data loop
    pub data_cmd_tx: Option<Sender<TransferCmd>>,
    // The data loop uses this receive messages from the control loop
    pub data_cmd_rx: Option<Receiver<TransferCmd>>,
    // The control loop uses this to ask the data loop to exit.
    pub data_abort_tx: Option<Sender<()>>,
    // The data loop listens to this so it can know when to exit.
    pub data_abort_rx: Option<Receiver<()>>,
    // This may not be needed here...
    pub control_msg_tx: Option<TransferSender>,
    // The socket address of the client on the control channel
    pub source: SocketAddr,
    // The control connection over the proxy protocol
    pub(crate) control_connection: Option<SocketAddrPair>,
    // The proxy the control connection came through, when the embedder read a PROXY protocol
    // header and gave the client's address as `source`: passive data connections forwarded by
    // the same proxy come from its address.
    pub(crate) proxy: Option<std::net::IpAddr>,
    // Points to the key of the active data connection
    pub(crate) switchboard_active_datachan: Option<SwitchboardKey>,
    // Current working directory
    pub cwd: std::path::PathBuf,
    // After a RNFR command this will hold the source path used by the RNTO command.
    pub rename_from: Option<PathBuf>,
    // This may need some work...
    pub state: SessionState,
    // Tells if FTPS/TLS security is available to the session or not. The variables cmd_tls and
    // data_tls tells if the channels are actually encrypted or not.
    pub ftps_config: FtpsConfig,
    // True if the command channel is in secure mode at the moment. Changed by AUTH and CCC commands.
    pub cmd_tls: bool,
    // True if the data channel is in secure mode at the moment. Changed by the PROT command.
    pub data_tls: bool,
    // True if metrics for prometheus are updated.
    pub collect_metrics: bool,
    // The starting byte for a STOR or RETR command. Set by the _Restart of Interrupted Transfer (REST)_
    // command to support resume functionality.
    pub start_pos: u64,
    // The facts MLST and MLSD give (`OPTS MLST`).
    pub mlst_facts: crate::server::controlchan::commands::mlst::Facts,
    // The number of the last transfer command handed to the data channel (counted by the
    // control loop, wrapping): the data channel's messages about a transfer carry it.
    pub transfer_number: u32,
    // Tells if the data loop is running. The control channel need to know if the data channel is
    // busy so that it doesn't time out while the session is still in progress.
    pub data_busy: bool,
    /// How long a data connection may take to arrive, and to get its command.
    pub data_connection_timeout: std::time::Duration,
    /// The session's idle timeout: also how long a transfer may go without progress.
    pub idle_session_timeout: std::time::Duration,
    /// The places for data connections the server's sessions share, if limited.
    pub data_connections: Option<Arc<tokio::sync::Semaphore>>,
    /// The place of the unused data connection set up last (a passive listener, or an active
    /// connection), held here until its task takes a transfer command (a newer `PASV`, `EPSV` or
    /// `PORT` reuses it for the listener or connection that replaces it; the task takes it for
    /// the transfer; `ABOR` or a timeout lets it go).
    pub passive_place: Option<Place>,
    /// `EPSV ALL` came (RFC 2428): `PASV`, `PORT` and `EPRT` are refused from then on.
    pub epsv_all: bool,
    /// The places this session holds (see `PLACES_PER_SESSION`); made at the first one (an
    /// idle session holds no allocation for it).
    pub places_held: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// The accept task of the passive listener opened last (one per session: a new PASV or
    /// EPSV, a PORT or the end of the session closes it).
    pub passive_accept: Option<tokio::task::AbortHandle>,
    // The client certificate chain if it was received.
    pub cert_chain: Option<Vec<unftp_core::auth::ClientCert>>,
    // The failed logins cache can monitor successive failed logins and apply a policy to deter brute force attacks.
    pub failed_logins: Option<Arc<FailedLoginsCache>>,
    // An optional functor that can bind a socket
    pub binder: Option<Box<dyn crate::options::Binder>>,
}

impl<Storage, User> Session<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    pub(super) fn new(storage: Arc<Storage>, source: SocketAddr) -> Self {
        Session {
            trace_id: TraceId::new(),
            user: Arc::new(None),
            username: None,
            storage,
            data_cmd_tx: None,
            data_cmd_rx: None,
            data_abort_tx: None,
            data_abort_rx: None,
            control_msg_tx: None,
            source,
            control_connection: None,
            proxy: None,
            switchboard_active_datachan: None,
            cwd: "/".into(),
            rename_from: None,
            state: SessionState::New,
            ftps_config: FtpsConfig::Off,
            cmd_tls: false,
            data_tls: false,
            collect_metrics: false,
            start_pos: 0,
            mlst_facts: crate::server::controlchan::commands::mlst::Facts::ALL,
            transfer_number: 0,
            data_busy: false,
            data_connection_timeout: crate::options::DEFAULT_DATA_CONNECTION_TIMEOUT,
            idle_session_timeout: std::time::Duration::from_secs(crate::options::DEFAULT_IDLE_SESSION_TIMEOUT_SECS),
            data_connections: None,
            passive_place: None,
            epsv_all: false,
            places_held: None,
            passive_accept: None,
            cert_chain: None,
            failed_logins: None,
            binder: None,
        }
    }

    /// `command` as it is handed to the data channel: numbered by the control loop (as
    /// `transfer_number` is now, set before the command's handler ran) and with the `REST`
    /// offset, taken from the session (leaving 0): it applies to this transfer only, whether it
    /// succeeds or not.
    pub(crate) fn transfer_cmd(&mut self, command: DataChanCmd) -> TransferCmd {
        TransferCmd {
            number: self.transfer_number,
            command,
            start_pos: std::mem::take(&mut self.start_pos),
        }
    }

    /// A place for a new data connection of this session: the unused passive listener's, which
    /// the new one replaces, or a new one; `Ok(None)` when data connections are not limited,
    /// `Err` when every place is taken.
    pub(crate) fn data_connection_place(&mut self) -> Result<Option<Place>, NoPlaceLeft> {
        if let Some(place) = self.passive_place.take() {
            return Ok(Some(place));
        }
        let Some(places) = &self.data_connections else { return Ok(None) };
        let held = self.places_held.get_or_insert_with(Arc::default);
        if held.load(std::sync::atomic::Ordering::Relaxed) >= PLACES_PER_SESSION {
            return Err(NoPlaceLeft);
        }
        let permit = places.clone().try_acquire_owned().map_err(|_| NoPlaceLeft)?;
        held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(Place {
            _permit: permit,
            held: held.clone(),
        }))
    }

    /// Closes the data connection set up and not yet used (its passive listener's task is
    /// aborted, an active connection's command channel closed: a transfer under way is not
    /// touched) and lets go of its place.
    pub(crate) fn close_unused_data_connection(&mut self) {
        if let Some(accepting) = self.passive_accept.take() {
            accepting.abort();
        }
        self.passive_place = None;
        self.data_cmd_tx = None;
    }

    pub fn ftps(mut self, mode: FtpsConfig) -> Self {
        self.ftps_config = mode;
        self
    }

    pub fn metrics(mut self, collect_metrics: bool) -> Self {
        if collect_metrics {
            metrics::inc_session();
        }
        self.collect_metrics = collect_metrics;
        self
    }

    pub fn binder(mut self, binder: Box<dyn crate::options::Binder>) -> Self {
        self.binder = Some(binder);
        self
    }

    pub fn control_msg_tx(mut self, sender: TransferSender) -> Self {
        self.control_msg_tx = Some(sender);
        self
    }

    // control_connection provides the switchboard with connection info to allocate a passive port
    pub(crate) fn control_connection(mut self, conn: Option<SocketAddrPair>) -> Self {
        self.control_connection = conn;
        self
    }

    pub fn failed_logins(mut self, failed_logins: Option<Arc<FailedLoginsCache>>) -> Self {
        self.failed_logins = failed_logins;
        self
    }
}

impl<Storage, User> Drop for Session<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    fn drop(&mut self) {
        if self.collect_metrics {
            // Decrease the sessions metrics gauge when the session goes out of scope.
            metrics::dec_session();
        }
    }
}
