//! The HTTP listener of `--metrics-listen`: /metrics for Prometheus, and
//! /healthz and /readyz for load balancers and service managers.
//!
//! It runs on threads of its own, never a reactor's: a slow scraper or a
//! stuck store call here delays no buyer. There are [`THREADS`] of them, so
//! that a health check is answered while a scrape waits on a store (the
//! queued drain lag asks Redis). It needs no token, so it belongs on
//! loopback or a private network.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use log::{debug, warn};
use prometheus::{Encoder, Registry, TextEncoder};
use tiny_http::{Header, Method, Request, Response};

use super::live::Sources;

/// The listening socket, bound at start with the others (a port that is
/// taken fails the start before anything is opened), not serving yet.
pub struct MetricsSocket {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
}

/// Threads answering requests: one can be in a slow scrape while another
/// answers /healthz and /readyz.
const THREADS: usize = 2;

/// A running listener; [`stop`](Self::stop) ends it.
pub struct MetricsListener {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl MetricsSocket {
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsSocket> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| io::Error::other(format!("--metrics-listen {addr}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the metrics listener is not on an IP address"))?;
        Ok(MetricsSocket {
            server: Arc::new(server),
            addr,
        })
    }

    pub fn serve(self, sources: Sources) -> io::Result<MetricsListener> {
        let MetricsSocket { server, addr } = self;
        let registry = Registry::new();
        for collector in sources.metrics.timing.collectors() {
            registry.register(collector).map_err(io::Error::other)?;
        }
        let process = prometheus::process_collector::ProcessCollector::for_self();
        registry
            .register(Box::new(process))
            .map_err(io::Error::other)?;
        let shared = Arc::new((registry, sources));
        let mut threads = Vec::with_capacity(THREADS);
        for index in 0..THREADS {
            let (serving, shared) = (server.clone(), shared.clone());
            let spawned = thread::Builder::new()
                .name(format!("metrics-http-{index}"))
                .spawn(move || {
                    let (registry, sources) = &*shared;
                    for request in serving.incoming_requests() {
                        respond(request, registry, sources);
                    }
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    MetricsListener {
                        server,
                        addr,
                        threads,
                    }
                    .stop();
                    return Err(e);
                }
            }
        }
        Ok(MetricsListener {
            server,
            addr,
            threads,
        })
    }
}

impl MetricsListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) {
        // Each unblock wakes one waiting thread, for good.
        for _ in &self.threads {
            self.server.unblock();
        }
        for thread in self.threads {
            if thread.join().is_err() {
                warn!("the metrics listener panicked");
            }
        }
    }
}

fn respond(request: Request, registry: &Registry, sources: &Sources) {
    let path = request.url().split('?').next().unwrap_or_default();
    let response = match (request.method(), path) {
        (Method::Get | Method::Head, "/metrics") => metrics(registry, sources),
        (Method::Get | Method::Head, "/healthz") => text(200, "ok\n".into()),
        (Method::Get | Method::Head, "/readyz") => match sources.readiness() {
            Ok(()) => text(200, "ready\n".into()),
            Err(why) => text(503, format!("not ready: {why}\n")),
        },
        (Method::Get | Method::Head, _) => {
            text(404, "not found: /metrics, /healthz, /readyz\n".into())
        }
        _ => text(405, "method not allowed\n".into()),
    };
    if let Err(e) = request.respond(response) {
        debug!("metrics listener: {e}");
    }
}

fn metrics(registry: &Registry, sources: &Sources) -> Response<io::Cursor<Vec<u8>>> {
    let mut families = registry.gather();
    families.extend(sources.families());
    // A family with no series (no goods yet) is not valid text format.
    families.retain(|f| !f.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&families, &mut body) {
        return text(500, format!("encoding metrics: {e}\n"));
    }
    Response::from_data(body).with_header(header(encoder.format_type()))
}

fn text(status: u16, body: String) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("text/plain; charset=utf-8"))
}

fn header(content_type: &str) -> Header {
    Header::from_bytes("Content-Type", content_type).expect("a valid header")
}
