//! The reactor: threads that own connections.
//!
//! Each reactor thread has its own `Poll` and a `Slab` of connections. It
//! reads, decodes, answers what needs no store, hands the rest to the worker
//! pool, and writes the replies that come back through its [`Mailbox`]. It
//! never blocks on anything but `poll`.
//!
//! A turn of a reactor's loop: poll; drive the connections with events,
//! then those waiting in the [`Backlog`] (how the turn's budget of requests
//! is shared between them is `backlog`'s); take in new connections and the
//! workers' completions; then the write side (`write`): replies written,
//! once per connection per turn, finished connections closed, and the
//! shared budget of unsent reply bytes kept. Driving a connection (reading,
//! decoding and handling its requests, within its budget) is the read side
//! (`read`).

pub mod acceptor;
pub mod admission;
mod backlog;
mod blocklist;
mod connection;
mod input_budget;
mod limits;
mod memory;
pub mod rate_limit;
mod read;
mod requests;
mod write;

pub use acceptor::{Acceptor, Listeners};
pub use requests::Handler;

use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};
use seckill_proto::Status;
use slab::Slab;

use self::backlog::{Backlog, TurnBudget};
use self::connection::Connection;
pub use self::limits::Limits;
use crate::config::Config;
use crate::dispatch::{Inbox, Mailbox, Reactors};
use crate::metrics;
use crate::stop::Stop;
use crate::telemetry::LocalRequests;

/// For tests: the next connection on `listener`, within a second (once
/// `connect` returned the handshake is done, but the accept queue may take
/// a moment on a loaded machine).
#[cfg(test)]
pub(crate) fn accept_soon(listener: &mio::net::TcpListener) -> mio::net::TcpStream {
    (0..200)
        .find_map(|_| match listener.accept() {
            Ok((socket, _)) => Some(socket),
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                None
            }
        })
        .expect("no connection accepted")
}

/// The waker's token, at the top of the range so it never meets a slab key.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// Completions handled per wake-up before the sockets get a turn again.
const COMPLETIONS_PER_ROUND: usize = 4096;

/// Requests a reactor takes from all its connections in one turn of its
/// loop, so that a turn has a bounded length. Past it, connections with
/// more to do wait in the [`Backlog`]'s line for the next turns. The
/// connections with events share three quarters of it, each served at
/// least one request in the turn its event comes; the line has the rest
/// and moves every turn (see `backlog` for the bound).
const REQUESTS_PER_REACTOR_TURN: usize = 1024;

/// Events taken from one poll: no more than the events' part of a turn, so
/// that each connection with an event can be given at least one request in
/// the turn its event comes (the rest stay in the kernel's ready list for
/// the next poll).
const EVENTS_PER_POLL: usize =
    REQUESTS_PER_REACTOR_TURN - REQUESTS_PER_REACTOR_TURN / backlog::LINE_SHARE;

pub struct Reactor {
    index: usize,
    poll: Poll,
    mailbox: Arc<Mailbox>,
    inbox: Inbox,
    conns: Slab<Connection>,
    /// Slots closed this round, freed once the round's events are handled.
    closed: Vec<usize>,
    next_generation: u64,
    handler: Handler,
    limits: Limits,
    stop: Stop,
    /// Every socket read lands here first; see [`Connection::read_chunk`].
    scratch: Box<[u8]>,
    /// Connections to flush (and close if finished) at the end of the turn.
    dirty: Vec<usize>,
    /// Connections to drive again next turn: they used their request
    /// budget, or a write un-paused them, with input perhaps waiting.
    again: Backlog,
    /// Unsent reply bytes of every reactor's connections (shared).
    reply_bytes: Arc<AtomicUsize>,
    /// This reactor's share of the reply budget: over the budget, each
    /// reactor closes its own non-readers only while its own connections
    /// hold more than this, so that none is closed for what the
    /// connections of another reactor hold.
    reply_share: usize,
    /// Buffered input bytes of every reactor's connections (shared).
    input_bytes: Arc<AtomicUsize>,
    /// This reactor's share of the input budget (as `reply_share`).
    input_share: usize,
    /// Buffered input bytes of this reactor's connections.
    input_mine: usize,
    /// When this reactor, over its share of the input budget, last found
    /// nothing it may close.
    input_unclosable_at: Option<Instant>,
    /// Buffer bytes freed since malloc was last asked to give memory back.
    freed: usize,
    /// Requests this turn may still take ([`REQUESTS_PER_REACTOR_TURN`]).
    turn: TurnBudget,
    /// Counts the turns, from 1 (see `Connection::taken_in`).
    turn_no: u64,
    /// When this turn's poll returned: requests read in the turn count
    /// their latency from here (their start costs no clock read of its
    /// own; their end, inline or on completion, reads it once).
    turn_started: Instant,
    /// Requests answered by the reactor itself this turn, as (opcode,
    /// status): timed together when the turn's replies are written.
    answered: Vec<(u8, Status)>,
    /// This reactor's request series, added to the shared ones once a turn.
    requests: LocalRequests,
}

/// The reactors before they run: a `Poll`, waker and mailbox each, made
/// before any thread starts, so that every other role can be given the
/// mailboxes (as [`Reactors`]) to send completions to.
pub struct ReactorSet {
    parts: Vec<(Poll, Arc<Mailbox>, Inbox)>,
}

impl ReactorSet {
    pub fn new(count: usize) -> io::Result<(ReactorSet, Reactors)> {
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = Poll::new()?;
            let (mailbox, inbox) = Mailbox::new(acceptor::waker(&poll)?);
            parts.push((poll, mailbox, inbox));
        }
        let reactors = Reactors::new(parts.iter().map(|(_, m, _)| m.clone()).collect());
        Ok((ReactorSet { parts }, reactors))
    }

    /// Starts one thread per reactor, each serving with its own copy of
    /// `handler`, until `stop`; each thread is put in `into` as it starts
    /// (should a spawn fail part of the way, the caller stops and joins
    /// those already running).
    pub fn spawn(
        self,
        config: &Config,
        handler: Handler,
        stop: &Stop,
        into: &mut Vec<JoinHandle<()>>,
    ) -> io::Result<()> {
        let limits = Limits::from_config(config);
        let reply_bytes = Arc::new(AtomicUsize::new(0));
        let input_bytes = Arc::new(AtomicUsize::new(0));
        let reactors = self.parts.len().max(1);
        for (index, (poll, mailbox, inbox)) in self.parts.into_iter().enumerate() {
            let reactor = Reactor {
                index,
                poll,
                mailbox,
                inbox,
                conns: Slab::new(),
                closed: Vec::new(),
                next_generation: 0,
                handler: handler.clone(),
                limits: limits.clone(),
                stop: stop.clone(),
                scratch: vec![0; connection::READ_CHUNK].into_boxed_slice(),
                dirty: Vec::new(),
                again: Backlog::default(),
                reply_bytes: reply_bytes.clone(),
                reply_share: limits.reply_budget / reactors,
                input_bytes: input_bytes.clone(),
                input_share: limits.input_budget / reactors,
                input_mine: 0,
                input_unclosable_at: None,
                freed: 0,
                turn: TurnBudget::new(REQUESTS_PER_REACTOR_TURN),
                turn_no: 0,
                turn_started: Instant::now(),
                answered: Vec::new(),
                requests: LocalRequests::new(),
            };
            into.push(reactor.spawn()?);
        }
        Ok(())
    }
}

impl Reactor {
    fn spawn(self) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("reactor-{}", self.index))
            .spawn(move || {
                let index = self.index;
                if let Err(e) = self.run() {
                    log::error!("reactor {index} stopped: {e}");
                }
            })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut last_sweep = Instant::now();
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let timeout = if !self.again.is_empty() {
                // Work left from the last turn: look for events, don't wait.
                Duration::ZERO
            } else if drain_deadline.is_some() {
                Duration::from_millis(20)
            } else {
                Duration::from_secs(1)
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            self.turn = self.again.begin_turn(REQUESTS_PER_REACTOR_TURN);
            // Shared among the connections the event pass will drive: not
            // the waker, nor a connection gone or waiting in the line.
            let fresh = events
                .iter()
                .filter(|e| self.conns.get(e.token().0).is_some_and(|c| !c.again))
                .count();
            self.turn.share_among(fresh);
            self.turn_no += 1;
            self.turn_started = Instant::now();
            // The events first: a connection with an event and no backlog
            // emptied its socket when last read, a client with a request or
            // a few. Those in the backlog are driven after, in their turn
            // (see `backlog`), their event noted.
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    WAKER_TOKEN => woken = true,
                    // Events are hints: note what may be possible, drive the
                    // connection and let it find out.
                    Token(slot) => {
                        let Some(conn) = self.conns.get_mut(slot) else {
                            continue;
                        };
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            conn.readable = true;
                        }
                        if event.is_read_closed() || event.is_error() {
                            // No more edges will come: read to the end.
                            conn.read_closed = true;
                        }
                        if event.is_writable() || event.is_write_closed() || event.is_error() {
                            conn.writable = true;
                        }
                        if !conn.again {
                            self.drive(slot);
                        }
                    }
                }
            }
            self.turn.release_line_share();
            while let Some((slot, generation)) = self.again.next(&self.turn) {
                match self.conns.get_mut(slot) {
                    Some(conn) if conn.generation == generation => {
                        conn.again = false;
                        self.drive(slot);
                    }
                    // Its connection closed; the slot may hold a new one,
                    // with a place of its own if it needs one.
                    _ => {}
                }
            }
            if woken {
                self.mailbox.reset();
                self.accept_new();
                self.complete();
            }
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                self.close_idle();
                if self.freed >= memory::TRIM_AFTER {
                    self.freed = 0;
                    memory::give_back();
                }
            }
            if drain_deadline.is_none() && self.stop.is_triggered() {
                info!(
                    "reactor {}: draining {} connections",
                    self.index,
                    self.conns.len()
                );
                drain_deadline = Some(Instant::now() + self.limits.shutdown_grace);
                self.start_drain();
            }
            self.time_requests();
            self.settle();
            self.keep_reply_budget();
            self.free_closed();
            if let Some(deadline) = drain_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    if !self.conns.is_empty() {
                        warn!(
                            "reactor {}: closing {} connections unfinished at shutdown",
                            self.index,
                            self.conns.len()
                        );
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Registers connections the acceptor handed over.
    fn accept_new(&mut self) {
        while let Ok(mut accepted) = self.inbox.accepted.try_recv() {
            if self.stop.is_triggered() {
                continue; // dropping it closes it
            }
            let entry = self.conns.vacant_entry();
            let slot = entry.key();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut accepted.socket, Token(slot), interest)
            {
                warn!("registering a connection: {e}");
                continue;
            }
            // Replies are small and latency matters more than packets. Set
            // here rather than by the acceptor, which must keep the listen
            // queue short in a storm.
            if let Err(e) = accepted.socket.set_nodelay(true) {
                debug!("set_nodelay: {e}");
            }
            self.next_generation += 1;
            entry.insert(Connection::new(accepted, self.next_generation));
            metrics::add(&self.handler.metrics.connections_open, 1);
            // Data that arrived before registration is reported by the
            // first poll, so nothing more is needed here.
        }
    }

    /// Writes the replies workers sent back.
    fn complete(&mut self) {
        let mut touched = Vec::new();
        let now = Instant::now();
        let timing = &self.handler.metrics.timing;
        for completion in self
            .inbox
            .completions
            .try_iter()
            .take(COMPLETIONS_PER_ROUND)
        {
            let origin = completion.origin;
            metrics::sub(&self.handler.metrics.requests_in_flight, 1);
            let Some(conn) = self.conns.get_mut(origin.conn.slot) else {
                continue;
            };
            if conn.generation != origin.conn.generation || conn.closed {
                continue; // its connection is gone
            }
            conn.inflight -= 1;
            conn.ticket.jobs_done(1);
            let latency = now.saturating_duration_since(origin.started);
            self.requests
                .request(timing, origin.opcode, completion.reply.status(), latency);
            completion.reply.for_version(conn.version).encode(
                origin.opcode,
                origin.id,
                &mut conn.wbuf,
            );
            conn.say_farewell_if_last();
            touched.push(origin.conn.slot);
        }
        if !self.inbox.completions.is_empty() {
            self.mailbox.wake(); // more next round
        }
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.drive(slot);
        }
    }

    /// Times the requests this turn answered on the spot, from the turn's
    /// start to now, just before their replies are written, and adds the
    /// turn's requests to the shared series.
    fn time_requests(&mut self) {
        if !self.answered.is_empty() {
            let elapsed = self.turn_started.elapsed();
            let timing = &self.handler.metrics.timing;
            for (opcode, status) in self.answered.drain(..) {
                self.requests.request(timing, opcode, status, elapsed);
            }
        }
        self.requests.flush();
    }

    /// Shutdown: read no new requests; answer those in flight and those
    /// whole in the read buffer; close.
    fn start_drain(&mut self) {
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.conns[slot].draining = true;
            self.drive(slot);
        }
    }
}
