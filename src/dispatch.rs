//! What travels between threads: jobs from reactors to workers, completions
//! from workers (and the order writer) back to the reactor that owns the
//! connection.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;

use crate::admin_log::Peer;
use crate::reactor::admission::Ticket;
use mio::Waker;
use seckill_proto::{Reply, Request};

/// A connection as another thread names it: its reactor, its slab slot, and
/// the generation of the connection in that slot. A completion whose
/// generation no longer matches belongs to a closed connection and is dropped,
/// never written to the stranger who reused the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub reactor: usize,
    pub slot: usize,
    pub generation: u64,
}

/// Who asked, and under which request id and opcode to answer.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub conn: ConnRef,
    pub id: u64,
    pub opcode: u8,
    /// When the reactor read the request (its turn began): the start of
    /// the request's latency.
    pub started: Instant,
}

/// A request that needs a store, so may block: done by a worker, never a
/// reactor.
#[derive(Debug)]
pub struct Job {
    pub origin: Origin,
    pub request: Request,
}

/// An admin request, with the address it came from: admin actions are
/// logged with it (`admin_log.rs`). BUYs and the other jobs do without, so
/// that the hot path carries no more than it needs.
#[derive(Debug)]
pub struct AdminJob {
    pub job: Job,
    pub peer: Peer,
}

#[derive(Debug)]
pub struct Completion {
    pub origin: Origin,
    pub reply: Reply,
}

/// A reactor's inbox: completions and newly accepted connections, with the
/// waker that gets its attention.
pub struct Mailbox {
    waker: Waker,
    /// Set by the first sender after the reactor last looked, so that a burst
    /// of completions costs one wake-up syscall, not one each.
    notified: AtomicBool,
    completions: Sender<Completion>,
    accepted: Sender<Accepted>,
}

/// A connection the acceptor admitted, on its way to a reactor.
pub struct Accepted {
    pub socket: TcpStream,
    /// Its place among the open connections, given back when it closes.
    pub ticket: Ticket,
    /// It came in on the admin listener.
    pub admin_port: bool,
    /// Its peer, as accept() told it (asking the socket again would cost
    /// the reactor a syscall per connection).
    pub peer: std::net::SocketAddr,
}

/// The reactor's end of its [`Mailbox`].
pub struct Inbox {
    pub completions: Receiver<Completion>,
    pub accepted: Receiver<Accepted>,
}

impl Mailbox {
    pub fn new(waker: Waker) -> (Arc<Mailbox>, Inbox) {
        let (completions, completions_rx) = crossbeam_channel::unbounded();
        let (accepted, accepted_rx) = crossbeam_channel::unbounded();
        let mailbox = Mailbox {
            waker,
            notified: AtomicBool::new(false),
            completions,
            accepted,
        };
        let inbox = Inbox {
            completions: completions_rx,
            accepted: accepted_rx,
        };
        (Arc::new(mailbox), inbox)
    }

    // The channels are unbounded on purpose: completions are bounded by the
    // jobs in flight (a cap per connection, a bounded job queue), and a
    // worker must never block on a reactor. Send fails only once the reactor
    // has exited, when there is no one left to answer.
    pub fn complete(&self, completion: Completion) {
        if self.completions.send(completion).is_ok() {
            self.wake();
        }
    }

    /// Queues an accepted connection without waking the reactor: the
    /// acceptor hands over a whole batch, then wakes each reactor it fed
    /// once ([`wake`](Self::wake)), instead of a wake-up per connection.
    pub fn hand_over(&self, conn: Accepted) {
        // Fails only once the reactor has exited; dropping the connection
        // closes it.
        let _ = self.accepted.send(conn);
    }

    /// Wakes the reactor unless a wake is already pending.
    pub fn wake(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("waking a reactor: {e}");
            }
        }
    }

    /// Called by the reactor *before* it drains the inbox: a message sent
    /// after this point wakes it again, so none is left unseen.
    pub fn reset(&self) {
        self.notified.store(false, Ordering::SeqCst);
    }
}

/// Routes completions to the reactor that owns the connection.
#[derive(Clone)]
pub struct Reactors(Arc<[Arc<Mailbox>]>);

impl Reactors {
    pub fn new(mailboxes: Vec<Arc<Mailbox>>) -> Reactors {
        Reactors(mailboxes.into())
    }

    /// The reactors' mailboxes, in order.
    pub fn mailboxes(&self) -> &[Arc<Mailbox>] {
        &self.0
    }

    pub fn complete(&self, origin: Origin, reply: Reply) {
        if let Some(mailbox) = self.0.get(origin.conn.reactor) {
            mailbox.complete(Completion { origin, reply });
        }
    }

    pub fn wake_all(&self) -> io::Result<()> {
        for m in self.0.iter() {
            m.waker.wake()?;
        }
        Ok(())
    }
}
