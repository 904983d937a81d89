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
        if self.deliver(completion) {
            self.wake();
        }
    }

    /// Queues a completion without waking the reactor, for a sender that
    /// has more to deliver and wakes it once after the last
    /// ([`Reactors::complete_all`]). Says whether it was queued.
    fn deliver(&self, completion: Completion) -> bool {
        self.completions.send(completion).is_ok()
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
                // None is pending after all: the next message tries again,
                // rather than every later one taking the failed wake for
                // pending and the reactor never draining its inbox.
                self.notified.store(false, Ordering::SeqCst);
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

    /// Many replies at once (an order writer's commit, the answers of a
    /// merged stock call): all queued first, then each reactor that got any
    /// is woken once. Waking on the first instead lets the reactor drain a
    /// few, write them, sleep and be woken again by the next ones, a turn
    /// and a write per connection for each piece of the batch; this way a
    /// connection's replies of one batch leave in one write.
    pub fn complete_all(&self, replies: impl IntoIterator<Item = (Origin, Reply)>) {
        // Made on the first reply: often there is none (every BUY of a
        // merged call reserved, its answers to come from the order writer).
        let mut fed = Vec::new();
        for (origin, reply) in replies {
            let reactor = origin.conn.reactor;
            if let Some(mailbox) = self.0.get(reactor) {
                if mailbox.deliver(Completion { origin, reply }) {
                    fed.resize(self.0.len(), false);
                    fed[reactor] = true;
                }
            }
        }
        for (mailbox, _) in self.0.iter().zip(fed).filter(|&(_, fed)| fed) {
            mailbox.wake();
        }
    }

    pub fn wake_all(&self) -> io::Result<()> {
        for m in self.0.iter() {
            m.waker.wake()?;
        }
        Ok(())
    }
}

/// Runs a sale's work for requests a reactor waits on, turning a panic into
/// `None` (logged): every request handed to a worker or the order writer
/// must be answered, or its connection would wait for the reply for ever
/// (it is never idle while a request is in flight). The thread lives on.
/// The stores stay the truth: whatever the panic interrupted is settled as
/// for a crash (an order left unsettled is in doubt until reconciled).
pub fn unless_panicked<T>(what: &str, work: impl FnOnce() -> T) -> Option<T> {
    crate::panics::caught(what, "answered internal_error", work)
}

/// The answer to a request whose work panicked.
pub fn panicked() -> Reply {
    Reply::error(
        seckill_proto::Status::InternalError,
        "the server failed on this request; its outcome is unknown",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Poll, Token};

    use super::*;

    fn origin(reactor: usize, id: u64) -> Origin {
        Origin {
            conn: ConnRef {
                reactor,
                slot: 0,
                generation: 0,
            },
            id,
            opcode: 0,
            started: Instant::now(),
        }
    }

    /// Whether `poll`'s waker fired, without waiting.
    fn woken(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        !events.is_empty()
    }

    #[test]
    fn complete_all_routes_each_reply_and_wakes_only_the_reactors_it_fed() {
        let mut polls: Vec<Poll> = (0..3).map(|_| Poll::new().expect("poll")).collect();
        let (mailboxes, inboxes): (Vec<_>, Vec<_>) = polls
            .iter()
            .map(|p| Mailbox::new(Waker::new(p.registry(), Token(0)).expect("waker")))
            .unzip();
        let reactors = Reactors::new(mailboxes);
        let replies = [(0, 1), (2, 2), (0, 3), (7, 4)].map(|(r, id)| (origin(r, id), Reply::Pong));
        reactors.complete_all(replies);
        let ids = |inbox: &Inbox| -> Vec<u64> {
            inbox.completions.try_iter().map(|c| c.origin.id).collect()
        };
        // Reactor 7 does not exist: its reply is dropped, nothing else.
        assert_eq!(ids(&inboxes[0]), [1, 3]);
        assert_eq!(ids(&inboxes[1]), Vec::<u64>::new());
        assert_eq!(ids(&inboxes[2]), [2]);
        let fired: Vec<bool> = polls.iter_mut().map(woken).collect();
        assert_eq!(fired, [true, false, true]);
        // Woken once: until the reactor resets its flag, no further wake.
        assert!(mailboxes_notified(&reactors, 0));
        reactors.complete_all([(origin(0, 5), Reply::Pong)]);
        assert!(!woken(&mut polls[0]));
        reactors.mailboxes()[0].reset();
        reactors.complete_all([(origin(0, 6), Reply::Pong)]);
        assert!(woken(&mut polls[0]));
        assert_eq!(ids(&inboxes[0]), [5, 6]);
    }

    fn mailboxes_notified(reactors: &Reactors, reactor: usize) -> bool {
        reactors.mailboxes()[reactor]
            .notified
            .load(Ordering::SeqCst)
    }

    /// Work that panics is `None`, answered with an error, and the thread
    /// goes on; work that does not is its result.
    #[test]
    fn a_panic_is_an_answer_not_a_lost_thread() {
        assert_eq!(unless_panicked("sum", || 2 + 2), Some(4));
        let lost: Option<Reply> = unless_panicked("a request", || panic!("a bug"));
        assert_eq!(lost, None);
        let reply = lost.unwrap_or_else(panicked);
        assert!(matches!(
            reply,
            Reply::Error {
                status: seckill_proto::Status::InternalError,
                ..
            }
        ));
        assert_eq!(unless_panicked("again", || "alive"), Some("alive"));
    }
}
