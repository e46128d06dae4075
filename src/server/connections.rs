//! Accepting HTTP connections: a cap on open connections, a deadline for each request head,
//! and graceful shutdown.
//!
//! `axum::serve` keeps every connection for as long as the client likes and has no way to
//! set hyper's header timeout, so a client that opens connections and sends nothing (or one
//! byte a minute) could hold every file descriptor the process has, and with them the store
//! and peer sync. Here:
//!
//! - at most [`ServeLimits::max_connections`] connections are open at once; when a new one
//!   arrives with every slot taken, the idle or stalled connection that moved least recently
//!   is closed to make room ([`super::shed`]); if every connection is busy and moving, the
//!   newcomer waits for a slot (nothing is refused);
//! - a request head must arrive within [`ServeLimits::header_read_timeout`] of the server
//!   starting to wait for it, which also closes a keep-alive connection idle for that long
//!   (hyper's `header_read_timeout`);
//! - a response that the client takes none of for [`ServeLimits::stream_idle_timeout`]
//!   closes the connection ([`super::stall`]);
//! - request heads are screened before hyper reads them ([`super::screen`]): a head over
//!   [`MAX_HEAD_BYTES`], a target over [`super::head::MAX_URI_BYTES`], a malformed head and
//!   ambiguous body framing are answered with the usual JSON error and the connection closed;
//! - on shutdown, the listener closes, tail streams end (`Node::end_streams`), idle
//!   connections close at once, and connections with
//!   a request in flight get up to [`ServeLimits::shutdown_timeout`] to finish it; whatever
//!   is still open then (a stalled upload, a reader that stopped reading) is aborted, so a
//!   stop signal always ends the server within that time.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::head::MAX_HEAD_BYTES;
use super::screen::{Screened, Screening};
use super::shed::{Activity, Connections, InFlight};
use super::stall::StallGuard;
use crate::http::Api;

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is done.
    struct TrackedBody {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl axum::body::HttpBody for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Connection limits of the HTTP server.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Connections open at once (`--max-connections`); at the cap the quietest idle or
    /// stalled one is closed to make room.
    pub max_connections: usize,
    /// A request head that has not fully arrived this long after the server began waiting
    /// for it closes the connection (idle keep-alive connections included).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish after the stop signal.
    pub shutdown_timeout: Duration,
    /// A response write that makes no progress for this long closes the connection.
    pub stream_idle_timeout: Duration,
}

/// Open HTTP connections at once. Well under a typical file-descriptor limit (1,024 is a
/// common soft limit), so a flood of connections leaves descriptors for the store and for
/// peer sync.
pub const MAX_HTTP_CONNECTIONS: usize = 512;
/// How long a connection may take to send a request head, counted from when the server
/// starts waiting for one (so also the idle time allowed between keep-alive requests).
pub const HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// How long in-flight requests may take to finish after a stop signal (`--shutdown-timeout`).
pub const SHUTDOWN_TIMEOUT_MS: u64 = 10_000;

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: MAX_HTTP_CONNECTIONS,
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
            shutdown_timeout: Duration::from_millis(SHUTDOWN_TIMEOUT_MS),
            stream_idle_timeout: Duration::from_millis(crate::http::STREAM_IDLE_TIMEOUT_MS),
        }
    }
}

/// Serves `api` on `listener` until `stop` completes, then shuts down gracefully and
/// returns once every connection has closed, or once the shutdown timeout has passed and the
/// connections still open have been aborted. `open` counts the connections open now (the
/// node's `kappalog_http_connections` metric).
pub async fn serve_http(
    listener: TcpListener,
    api: Api,
    limits: ServeLimits,
    open: Gauge,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The screen refuses longer heads first; the same bound here keeps hyper from ever
        // judging a head differently (and bounds chunked trailers alike).
        .max_header_size(MAX_HEAD_BYTES);
    tokio::pin!(stop);
    // Every connection task, so the ones still open at the shutdown deadline can be aborted.
    let mut tasks = tokio::task::JoinSet::new();
    let connections = Arc::new(Connections::default());
    let origin = Instant::now();
    let mut next_id = 0u64;
    loop {
        // Reap finished connections so the set stays as small as what is open.
        while tasks.try_join_next().is_some() {}
        let Some(tcp) = accept(&listener, &mut stop).await else {
            break;
        };
        let Some(slot) = take_slot(&slots, &connections, origin, &mut stop).await else {
            break;
        };
        // Responses are small and written whole: send them at once rather than letting
        // Nagle's algorithm hold them for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let activity = Activity::new(origin);
        let screening = Arc::new(Screening::default());
        let service = connection_service(api.clone(), activity.clone(), screening.clone());
        let io = TokioIo::new(Screened::new(
            StallGuard::new(tcp, limits.stream_idle_timeout, activity.clone()),
            screening,
        ));
        let connection = graceful.watch(builder.serve_connection(io, service));
        let open = OpenGuard::new(open.clone());
        next_id += 1;
        let id = next_id;
        let table = connections.clone();
        // The task removes its entry when it ends; it starts only once the entry is in, so
        // a connection that ends at once never leaves a stale entry behind.
        let (registered, wait_registered) = tokio::sync::oneshot::channel::<()>();
        let task = tasks.spawn(async move {
            // Decremented however the task ends, aborted included.
            let _open = open;
            let _ = wait_registered.await;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            table.remove(id);
            drop(slot);
        });
        connections.insert(id, activity, task);
        let _ = registered.send(());
    }
    drop(listener);
    // Tail streams would otherwise keep their requests in flight until the deadline.
    api.get_ref().node().end_streams();
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            timeout_ms = u64::try_from(limits.shutdown_timeout.as_millis()).unwrap_or(u64::MAX),
            "HTTP requests still in flight at the shutdown deadline: aborting them"
        );
    }
    tasks.shutdown().await;
}

/// The next accepted connection, or `None` once `stop` completes.
async fn accept<S: Future<Output = ()>>(
    listener: &TcpListener,
    stop: &mut Pin<&mut S>,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => return Some(tcp),
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: the listener
                    // itself is fine. Back off briefly rather than spin on the error.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        () = stop.as_mut() => return None,
                    }
                }
            },
            () = stop.as_mut() => return None,
        }
    }
}

/// A connection slot, or `None` once `stop` completes. With every slot taken, the quietest
/// idle or stalled connection is closed to make room (if there is none, this waits for one
/// to end).
async fn take_slot<S: Future<Output = ()>>(
    slots: &Arc<Semaphore>,
    connections: &Connections,
    origin: Instant,
    stop: &mut Pin<&mut S>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if connections.shed_one(origin) {
        tracing::debug!("HTTP connection cap reached: closed the quietest connection");
    }
    tokio::select! {
        // The semaphore is never closed, so an error cannot happen; it would end serving.
        slot = slots.clone().acquire_owned() => slot.ok(),
        () = stop.as_mut() => None,
    }
}

/// The per-connection service: a refused head is answered by the screen without the router
/// (see `screen`); every request counts as in flight until its response body is done or
/// dropped.
fn connection_service(
    api: Api,
    activity: Arc<Activity>,
    screening: Arc<Screening>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<TrackedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<TrackedBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = activity.begin();
        let call = match screening.answer(&request) {
            Some(refused) => Err(refused),
            None => Ok(api.clone().oneshot(request.map(Body::new))),
        };
        async move {
            let response = match call {
                Ok(call) => call.await?,
                Err(refused) => refused,
            };
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                inner: body,
                _in_flight: in_flight,
            }))
        }
    })
}

/// Counts one open connection for as long as it lives.
struct OpenGuard(Gauge);

impl OpenGuard {
    fn new(gauge: Gauge) -> OpenGuard {
        gauge.inc();
        OpenGuard(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
