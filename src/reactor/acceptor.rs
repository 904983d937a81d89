//! The acceptor: one thread that accepts connections and deals them out to
//! the reactors, round robin. It listens on the public address and, when
//! configured, on the admin address; it admits a connection only within the
//! connection limits, and tells one it refuses why before closing it.

use std::io::{self, Write};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use seckill_proto::{Opcode, Reply, Status};

use super::admission::Admission;
use super::WAKER_TOKEN;
use crate::config::Config;
use crate::dispatch::{Accepted, Reactors};
use crate::metrics::{self, Metrics};
use crate::stop::Stop;

const PUBLIC: Token = Token(0);
const ADMIN: Token = Token(1);

/// How long to wait before accepting again after the process ran out of
/// file descriptors (or another resource): the pending connections stay in
/// the kernel's backlog meanwhile, and the acceptor does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listening sockets, bound before any thread starts, so that a port in
/// use is an error at start.
pub struct Listeners {
    public: TcpListener,
    admin: Option<TcpListener>,
}

impl Listeners {
    pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let public = TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let admin = match config.admin_listen {
            Some(admin) => {
                let l = TcpListener::bind(admin)
                    .with_context(|| format!("binding the admin listener {admin}"))?;
                let bound = l.local_addr()?;
                if !bound.ip().is_loopback() {
                    warn!("the admin listener {bound} is not on loopback: keep it off public networks");
                }
                info!("admin commands on {bound} only");
                Some(l)
            }
            None => None,
        };
        Ok(Listeners { public, admin })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.public.local_addr()
    }

    pub fn admin_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.admin.as_ref().map(|l| l.local_addr()).transpose()
    }
}

pub struct Acceptor {
    poll: Poll,
    waker: Arc<mio::Waker>,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    admission: Arc<Admission>,
    reactors: Reactors,
    next: usize,
    metrics: Arc<Metrics>,
    stop: Stop,
}

impl Acceptor {
    /// An acceptor for `listeners` that deals connections out to
    /// `reactors`, within the configured connection limits, until `stop`
    /// (then woken through [`waker`](Self::waker)).
    pub fn new(
        config: &Config,
        listeners: Listeners,
        reactors: Reactors,
        metrics: Arc<Metrics>,
        stop: Stop,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(waker(&poll)?);
        let Listeners {
            public: mut listener,
            admin: mut admin_listener,
        } = listeners;
        poll.registry()
            .register(&mut listener, PUBLIC, Interest::READABLE)?;
        if let Some(admin) = admin_listener.as_mut() {
            poll.registry().register(admin, ADMIN, Interest::READABLE)?;
        }
        Ok(Acceptor {
            poll,
            waker,
            listener,
            admin_listener,
            admission: Admission::new(config.max_connections, config.max_connections_per_ip),
            reactors,
            next: 0,
            metrics,
            stop,
        })
    }

    /// Wakes the acceptor out of `poll`, to see a stop.
    pub fn waker(&self) -> Arc<mio::Waker> {
        self.waker.clone()
    }

    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || {
                if let Err(e) = self.run() {
                    error!("acceptor stopped: {e}");
                }
            })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        let mut backoff = None;
        loop {
            match self.poll.poll(&mut events, backoff) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            if self.stop.is_triggered() {
                info!("acceptor: no longer accepting");
                return Ok(()); // dropping the listener closes it
            }
            // Whatever woke us (a listener event, or the end of a backoff),
            // accept until the backlogs are empty: events are edge-triggered.
            backoff = self.accept_all(false);
            if self.admin_listener.is_some() {
                backoff = backoff.or(self.accept_all(true));
            }
        }
    }

    /// Accepts until `WouldBlock`. Returns a backoff if it had to stop early.
    fn accept_all(&mut self, admin_port: bool) -> Option<Duration> {
        loop {
            let listener = match (admin_port, &self.admin_listener) {
                (true, Some(admin)) => admin,
                _ => &self.listener,
            };
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer.ip(), admin_port),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ECONNABORTED and friends concern one connection only.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    error!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    return Some(ACCEPT_BACKOFF);
                }
            }
        }
    }
}

impl Acceptor {
    fn admit(&mut self, mut socket: TcpStream, ip: IpAddr, admin_port: bool) {
        let ticket = match self.admission.admit(ip) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                metrics::add(&self.metrics.connections_refused, 1);
                // One small frame into an empty socket buffer: the write
                // cannot block, and if it fails there is no one to tell.
                let mut frame = BytesMut::new();
                Reply::error(Status::Busy, refusal.message()).encode(
                    Opcode::Error as u8,
                    0,
                    &mut frame,
                );
                let _ = socket.write(&frame);
                return; // dropping the socket closes it
            }
        };
        // Replies are small and latency matters more than packets.
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set_nodelay: {e}");
        }
        metrics::add(&self.metrics.connections_accepted, 1);
        let reactors = self.reactors.mailboxes();
        reactors[self.next % reactors.len()].hand_over(Accepted {
            socket,
            ticket,
            admin_port,
        });
        self.next = self.next.wrapping_add(1);
    }
}

/// Registers a waker on `poll` under [`WAKER_TOKEN`].
pub fn waker(poll: &Poll) -> io::Result<mio::Waker> {
    mio::Waker::new(poll.registry(), WAKER_TOKEN)
}
