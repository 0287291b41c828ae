//! The public listener's accept loop, over plain TCP or TLS: hyper-util's HTTP/1.1 and
//! HTTP/2 server (ALPN over TLS, prior knowledge over plain TCP), with a limit on the time
//! a client may take to send a request's headers, and graceful shutdown like `axum::serve`
//! (stop accepting, let the requests in flight finish).
//!
//! `axum::serve` sets no timer on hyper, so a connection could hold a socket and a task
//! forever by sending its request line a byte at a time, or nothing at all (a slow-header
//! client): here it is closed when a request's headers are not in within
//! `HEADER_READ_TIMEOUT_MS` (the first request's by this loop, every later one's on a
//! keep-alive HTTP/1 connection by hyper's timer). The body's upload and the handler
//! are bounded by `REQUEST_TIMEOUT_MS` (the request middleware), as before.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP server of every connection: HTTP/1 header reads time out after
/// `header_read_timeout`.
pub fn builder(header_read_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
}

/// Serves `app` on `listener` (over TLS with `acceptor`) until `shutdown` completes, then
/// stops accepting and waits for the connections in flight to finish their requests.
pub async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = builder(header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (acceptor, builder, app) = (acceptor.clone(), builder.clone(), app.clone());
        let watcher = graceful.watcher();
        let timeout = header_read_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, peer, &builder, app, timeout, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            connection(tls, peer, &builder, app, timeout, watcher).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

// Serves one connection until it ends (or the graceful shutdown ends it). A connection
// whose first request's headers are not in by `header_read_timeout` is closed: hyper's
// HTTP/1 timer only starts once hyper-util has told HTTP/1 from HTTP/2, which waits for
// the client's first bytes without a limit (a client that connects and sends nothing, or
// a few bytes of the HTTP/2 preface); hyper's timer bounds every later request's headers.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    builder: &Builder<TokioExecutor>,
    app: Router,
    header_read_timeout: Duration,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let first = Arc::clone(&started);
    // The peer address reaches handlers as `ConnectInfo` (the audit's source).
    let app = tower::ServiceExt::map_request(
        app,
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            first.store(true, Ordering::Relaxed);
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        },
    );
    let service = TowerToHyperService::new(app);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let serving = watcher.watch(connection);
    let first_request = async {
        tokio::time::sleep(header_read_timeout).await;
        if started.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serving => {
            if let Err(error) = served {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        }
        () = first_request => {
            tracing::debug!("no request headers within the header read timeout; closing");
        }
    }
}
