//! The acceptor: one thread that accepts connections and deals them out to
//! the reactors, round robin.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{error, info};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::WAKER_TOKEN;
use crate::dispatch::Reactors;
use crate::metrics::{self, Metrics};

const LISTENER: Token = Token(0);

/// How long to wait before accepting again after the process ran out of
/// file descriptors (or another resource): the pending connections stay in
/// the kernel's backlog meanwhile, and the acceptor does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Acceptor {
    poll: Poll,
    listener: TcpListener,
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
        reactors: Reactors,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Acceptor {
            poll,
            listener,
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
            // accept until the backlog is empty: events are edge-triggered.
            backoff = self.accept_all();
        }
    }

    /// Accepts until `WouldBlock`. Returns a backoff if it had to stop early.
    fn accept_all(&mut self) -> Option<Duration> {
        loop {
            match self.listener.accept() {
                Ok((socket, _peer)) => {
                    // Replies are small and latency matters more than packets.
                    if let Err(e) = socket.set_nodelay(true) {
                        log::debug!("set_nodelay: {e}");
                    }
                    metrics::add(&self.metrics.connections_accepted, 1);
                    let reactors = &self.reactors.0;
                    reactors[self.next % reactors.len()].hand_over(socket);
                    self.next = self.next.wrapping_add(1);
                }
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

/// Registers a waker on `poll` under [`WAKER_TOKEN`].
pub fn waker(poll: &Poll) -> io::Result<mio::Waker> {
    mio::Waker::new(poll.registry(), WAKER_TOKEN)
}
