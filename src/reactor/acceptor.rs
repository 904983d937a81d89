//! The acceptor: one thread that accepts connections and deals them out to
//! the reactors, round robin. It listens on the public address and, when
//! configured, on the admin address; it admits a connection only within the
//! connection limits, and tells one it refuses why before closing it.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::BytesMut;
use log::{error, info};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use seckill_proto::{Opcode, Reply, Status};

use super::admission::Admission;
use super::WAKER_TOKEN;
use crate::dispatch::{Accepted, Reactors};
use crate::metrics::{self, Metrics};

const PUBLIC: Token = Token(0);
const ADMIN: Token = Token(1);

/// How long to wait before accepting again after the process ran out of
/// file descriptors (or another resource): the pending connections stay in
/// the kernel's backlog meanwhile, and the acceptor does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Acceptor {
    poll: Poll,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    admission: Arc<Admission>,
    reactors: Reactors,
    next: usize,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
}

impl Acceptor {
    /// `poll` must already carry the acceptor's waker under [`WAKER_TOKEN`].
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        mut admin_listener: Option<TcpListener>,
        admission: Arc<Admission>,
        reactors: Reactors,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, PUBLIC, Interest::READABLE)?;
        if let Some(admin) = admin_listener.as_mut() {
            poll.registry().register(admin, ADMIN, Interest::READABLE)?;
        }
        Ok(Acceptor {
            poll,
            listener,
            admin_listener,
            admission,
            reactors,
            next: 0,
            metrics,
            shutdown,
        })
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
            if self.shutdown.load(Ordering::Acquire) {
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
        let reactors = &self.reactors.0;
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
