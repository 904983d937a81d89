//! Serving HTTP/1.1 with the limits a gateway facing the internet needs:
//! a cap on connections, a deadline on every wait for a client, and an age
//! past which a connection gives its place up.
//!
//! `axum::serve` has none of these, so a client could hold a connection (and a
//! file descriptor) forever: opening sockets and sending nothing, sending
//! a header or a body a byte a minute, or never reading its answers. Here
//! each connection is served by hyper directly, and
//!
//! - at most `max_connections` are open: at the cap the loop stops
//!   accepting (the kernel's backlog holds new ones) until one closes;
//! - the request head must arrive within `header_timeout` of the first
//!   wait for it, which also bounds an idle keep-alive connection (hyper's
//!   `header_read_timeout`, timed from the end of the previous answer);
//! - the request body within `body_timeout` of its head: a handler reading
//!   it then gets an error, answered 408 ([`Deadline`]);
//! - a write the client does not take (its receive window full) may stall
//!   for `send_timeout`, then the connection is closed (`SendDeadline`);
//! - a connection is closed once `max_age` old, after its request in
//!   flight: a client that keeps sending requests (or pipelined a great
//!   many and reads them slowly) waits on none of the deadlines above.
//!
//! A connection asked to close (at `max_age`, or when the gateway stops)
//! has `drain_timeout` to finish its request in flight, then is dropped.
//!
//! A handler's own wait on the seckill servers is bounded by the client's
//! timeouts, not here: a BUY cut off by the gateway would leave its buyer
//! not knowing whether it bought.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tower_service::Service;

/// The limits every connection is served under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; past it, new ones wait in the backlog.
    pub max_connections: usize,
    /// For a request's head, and for the next one on an idle connection.
    pub header_timeout: Duration,
    /// For a request's body, from its head.
    pub body_timeout: Duration,
    /// For a write the client does not take.
    pub send_timeout: Duration,
    /// How long a connection is served before it is closed (after its
    /// request in flight): its place is then free for another client.
    pub max_age: Duration,
    /// For requests in flight to finish once their connection is closing
    /// (at `max_age`, or at shutdown).
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(15),
        }
    }
}

/// Connections at most, whatever is asked: the drain at shutdown takes
/// every place back at once, which a semaphore counts in `u32`.
const MAX_CONNECTIONS: usize = 1 << 24;

/// Bytes a connection buffers from its client at most (hyper's default is
/// about 400 kB): a head or a body chunk; the largest body is 64 kB.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How often, at most, the cap being reached is logged.
const CAP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` under `limits` until `shutdown` resolves;
/// then stops accepting, lets the requests in flight finish (at most
/// `drain_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, MAX_CONNECTIONS);
    let slots = Arc::new(Semaphore::new(max));
    let (stopping, stop) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER_BYTES)
        .keep_alive(true);
    let mut cap_logged: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        if slots.available_permits() == 0
            && cap_logged.is_none_or(|at| at.elapsed() >= CAP_LOG_EVERY)
        {
            log::warn!(
                "{} connections open (--max-connections): new ones wait until one closes",
                limits.max_connections
            );
            cap_logged = Some(Instant::now());
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small and each is written whole: no reason to wait
        // for more to send.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(SendDeadline::new(stream, limits.send_timeout));
        let app = app.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| Deadline::new(body, body_timeout));
            // Where it came from, as axum's `into_make_service_with_connect_info`
            // gives it: the admin login counts wrong tokens per address,
            // the demo login logins.
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request)
        });
        let connection = http.serve_connection(io, service);
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(connection, limits, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every connection asked to close after its request in flight; all
    // places free again means all closed.
    let _ = stopping.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        log::warn!(
            "requests still in flight after {:?}; stopping anyway",
            limits.drain_timeout
        );
    }
}

/// One connection, to its end: closed (after its request in flight, if
/// any) once it is `max_age` old or the gateway stops, and dropped if that
/// takes longer than `drain_timeout`. A client that keeps sending requests
/// never waits on a deadline, so only its age ends its hold on a place.
async fn serve_connection<C>(connection: C, limits: Limits, mut stop: watch::Receiver<bool>)
where
    C: Future<Output = hyper::Result<()>> + GracefulConnection,
{
    tokio::pin!(connection);
    let deadline = tokio::time::sleep(limits.max_age);
    tokio::pin!(deadline);
    let mut closing = *stop.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    log::debug!("connection ended: {e}");
                }
                return;
            }
            () = &mut deadline => {
                if closing {
                    log::debug!("connection dropped: not closed within {:?}", limits.drain_timeout);
                    return;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
                deadline.as_mut().reset(tokio::time::Instant::now() + limits.drain_timeout);
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                    deadline.as_mut().reset(tokio::time::Instant::now() + limits.drain_timeout);
                }
            }
        }
    }
}

/// What hyper's connections offer for closing gracefully.
trait GracefulConnection {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: HttpBody + 'static,
    <S::ResBody as HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self)
    }
}

/// A failed accept: the peer gave up first (nothing to do), or the process
/// is out of descriptors or memory, which a moment may cure; trying again
/// at once would spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    log::warn!("accept failed: {e}; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A request body that fails with `TimedOut` once its deadline passes,
/// however steadily bytes arrive before it: a deadline on the whole body,
/// which tower-http's `TimeoutBody` (a timeout between frames) is not.
#[derive(Debug)]
pub struct Deadline {
    body: Incoming,
    expires: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, timeout: Duration) -> Self {
        Deadline {
            body,
            expires: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(io::Error::other)));
        }
        match self.expires.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection whose writes fail with `TimedOut` after waiting on the
/// client for the send timeout: a client that stops reading would
/// otherwise hold it as long as it likes (hyper reads nothing more while
/// an answer is unsent, so no read timeout sees it).
struct SendDeadline {
    stream: TcpStream,
    timeout: Duration,
    /// Since the first write that found the socket full, until one goes.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendDeadline {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        SendDeadline {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// What a write returned, with the stall timed: `Pending` starts (or
    /// goes on with) the deadline, which wakes this task when it passes so
    /// that the write is tried once more and fails.
    fn timed(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if written.is_ready() {
            self.stalled = None;
            return written;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no bytes for the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for SendDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.timed(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.timed(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
