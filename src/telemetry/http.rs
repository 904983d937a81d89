//! The HTTP listener of `--metrics-listen`: /metrics for Prometheus, and
//! /healthz and /readyz for load balancers and service managers.
//!
//! It runs on a thread of its own, never a reactor's: a slow scraper or a
//! stuck store call here delays no buyer. A scrape is gathered on one of
//! [`SCRAPERS`] blocking threads (the queued drain lag asks Redis), so that
//! a health check is answered while a scrape waits on a store.
//!
//! It needs no token, so it belongs on loopback or a private network; still,
//! whoever reaches it must not be able to harm the sale. hyper serves it
//! under limits that bound what a client can hold: at most
//! [`MAX_CONNECTIONS`] open at once (past it the loop stops accepting and
//! the kernel's backlog holds new ones), [`PER_ADDRESS`] of them from one
//! client address (past it a connection is answered 503 at once), at most
//! [`SCRAPERS`] scrapes at once (past it 503), a request head within
//! [`HEAD_TIMEOUT`] and of at most [`HEAD_BYTES`], and a connection closed
//! once [`MAX_AGE`] old, whatever it is doing (a client that does not read
//! its answer included). Request bodies are never read: a request that
//! declares one is answered, and its connection is not kept.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::{watch, Semaphore};

use super::live::Sources;
use crate::reactor::admission::Admission;

/// Connections open at once: a few scrapers and health checkers need a
/// handful.
const MAX_CONNECTIONS: usize = 64;

/// ... and from one client address: one client cannot hold them all.
const PER_ADDRESS: usize = 8;

/// For a request's head, and for the next one on an idle connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a request head read (hyper's smallest read buffer).
const HEAD_BYTES: usize = 8192;

/// How long a connection is served, whatever it does.
const MAX_AGE: Duration = Duration::from_secs(60);

/// Threads a scrape may be gathered on at once.
const SCRAPERS: usize = 2;

/// How long a stop waits for a scrape under way.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The listening socket, bound at start with the others (a port that is
/// taken fails the start before anything is opened), not serving yet.
pub struct MetricsSocket {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

/// A running listener; [`stop`](Self::stop) ends it.
pub struct MetricsListener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl MetricsSocket {
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsSocket> {
        let failed =
            |e: io::Error| io::Error::new(e.kind(), format!("--metrics-listen {addr}: {e}"));
        let listener = std::net::TcpListener::bind(addr).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        Ok(MetricsSocket { listener, addr })
    }

    pub fn serve(self, sources: Sources) -> io::Result<MetricsListener> {
        let MetricsSocket { listener, addr } = self;
        let registry = Registry::new();
        for collector in sources.metrics.timing.collectors() {
            registry.register(collector).map_err(io::Error::other)?;
        }
        let process = prometheus::process_collector::ProcessCollector::for_self();
        registry
            .register(Box::new(process))
            .map_err(io::Error::other)?;
        let shared = Arc::new(Served {
            registry,
            sources,
            scrapers: Arc::new(Semaphore::new(SCRAPERS)),
            per_address: Admission::new(MAX_CONNECTIONS, PER_ADDRESS, 0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(SCRAPERS)
            .thread_name("metrics-scrape")
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let thread = thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, shared, stopped));
                runtime.shutdown_timeout(STOP_WAIT);
            })?;
        Ok(MetricsListener { addr, stop, thread })
    }
}

impl MetricsListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) {
        let _ = self.stop.send(true);
        if self.thread.join().is_err() {
            warn!("the metrics listener panicked");
        }
    }
}

/// What every connection's answers are made from.
struct Served {
    registry: Registry,
    sources: Sources,
    /// One per scrape that may run at once.
    scrapers: Arc<Semaphore>,
    /// Connections open, per client address (an IPv6 address by its /64),
    /// [`PER_ADDRESS`] at most: the count the server's own listeners keep.
    per_address: Arc<Admission>,
}

type Shared = Arc<Served>;

/// Accepts and serves connections until `stopped` says so; the connections
/// still open then are dropped with the runtime.
async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            warn!("the metrics listener cannot serve: {e}");
            return;
        }
    };
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(HEAD_BYTES);
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => return,
            },
            _ = stopped.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: tried again shortly.
                    debug!("metrics listener: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let Ok(held) = shared.per_address.admit(peer.ip(), false) else {
            // One client may not hold every place: told so at once, so
            // that a health check from elsewhere is not left waiting (the
            // answer fits a new socket's buffer; its request is not read).
            let _ = stream.try_write(TOO_MANY);
            drop((stream, place));
            continue;
        };
        let serving = shared.clone();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| answer(request, serving.clone())),
        );
        tokio::spawn(async move {
            let _place = (place, held);
            // Past its age, dropped whatever it was doing.
            if let Ok(Err(e)) = tokio::time::timeout(MAX_AGE, connection).await {
                debug!("metrics listener: {e}");
            }
        });
    }
}

/// The whole answer to a connection over its address's share.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 39\r\n\r\n\
too many connections from your address\n";

async fn answer(
    request: Request<Incoming>,
    shared: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // A body is never read: the connection ends with this answer.
    let has_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = match (get, request.uri().path()) {
        (true, "/metrics") => match shared.scrapers.clone().try_acquire_owned() {
            // A scrape runs to its end once begun (a blocking thread cannot
            // be stopped), whoever waits for it: at most SCRAPERS at once,
            // however many clients ask, or give up asking.
            Ok(permit) => {
                let scraped = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    metrics(&shared.registry, &shared.sources)
                })
                .await;
                scraped.unwrap_or_else(|e| {
                    // A panic's text is for the log, not for whoever asked.
                    warn!("metrics listener: gathering metrics failed: {e}");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "gathering metrics failed\n".into(),
                    )
                })
            }
            Err(_) => busy("scrapes are under way: retry shortly\n"),
        },
        (true, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (true, "/readyz") => match shared.sources.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        (true, _) => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
        (false, _) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
    };
    if has_body {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    Ok(response)
}

fn metrics(registry: &Registry, sources: &Sources) -> Response<Full<Bytes>> {
    let mut families = registry.gather();
    families.extend(sources.families());
    // A family with no series (no goods yet) is not valid text format.
    families.retain(|f| !f.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&families, &mut body) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        );
    }
    respond(StatusCode::OK, encoder.format_type(), body)
}

fn busy(why: &str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, why.into());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.into_bytes())
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
