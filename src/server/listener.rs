//! The accept loop of one server: it accepts TCP connections, builds one libunftp server per
//! connection ([`crate::server::build_server`]) and runs it; on shutdown it stops accepting,
//! gives open connections the grace period, then closes the ones still open.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::server::{build_server, ServerContext};

/// Serves `listener` until `shutdown` completes, then stops accepting, gives open connections
/// the grace period to finish, and closes the ones still open.
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>, shutdown: impl Future<Output = ()>) {
    let name = context.name().to_string();
    let (close_sender, close_receiver) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(run_connection(context.clone(), stream, peer, close_receiver.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(server = %name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(server = %name, open = connections.len(), "shutting down");
    let drained =
        tokio::time::timeout(context.settings.grace_period, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::info!(server = %name, open = connections.len(), "grace period over, closing connections");
        let _ = close_sender.send(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while connections.join_next().await.is_some() {} })
                .await;
    }
    tracing::info!(server = %name, "stopped");
}

/// Runs one control connection until it ends or the server closes it.
async fn run_connection(
    context: Arc<ServerContext>,
    stream: TcpStream,
    peer: SocketAddr,
    mut close: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // libunftp runs the session in a task of its own, which dropping our future would not stop;
    // a second handle on the socket lets us shut the socket down under it.
    let (stream, handle) = if context.settings.close_on_stop {
        match split_handle(stream) {
            Ok((stream, handle)) => (stream, Some(handle)),
            Err(error) => return tracing::warn!(%peer, %error, "cannot set up connection"),
        }
    } else {
        (stream, None)
    };
    let server = match build_server(&context, peer) {
        Ok(server) => server,
        Err(error) => return tracing::error!(%peer, %error, "cannot build the FTP server"),
    };
    tracing::debug!(server = %context.name(), %peer, "connection opened");
    tokio::select! {
        _ = server.service(stream) => {}
        _ = close.wait_for(|closing| *closing) => {
            if let Some(handle) = handle {
                let _ = handle.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let handle = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, handle))
}
