//! The reactor: threads that own connections.
//!
//! Each reactor thread has its own `Poll` and a `Slab` of connections. It
//! reads, decodes, answers what needs no store, hands the rest to the worker
//! pool, and writes the replies that come back through its [`Mailbox`]. It
//! never blocks on anything but `poll`.
//!
//! mio is edge-triggered: a readiness event is a hint that comes once, so a
//! connection is read until `WouldBlock` unless it is paused (too much in
//! flight, too much unsent). A paused connection is driven again when a
//! completion or a drained write un-pauses it, since no new event will come
//! for bytes already waiting in the socket.

pub mod acceptor;
pub mod admission;
mod connection;
pub mod rate_limit;
mod requests;

pub use acceptor::{Acceptor, Listeners};
pub use requests::Handler;

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Buf;
use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};
use seckill_proto::{Frame, FrameError, Opcode, Reply, Status};
use slab::Slab;

use self::connection::{Connection, ReadOutcome};
use crate::config::Config;
use crate::dispatch::{ConnRef, Inbox, Mailbox, Reactors};
use crate::metrics;
use crate::stop::Stop;

/// The waker's token, at the top of the range so it never meets a slab key.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// Completions handled per wake-up before the sockets get a turn again.
const COMPLETIONS_PER_ROUND: usize = 4096;

/// Limits a reactor enforces on each connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frame: u32,
    pub max_inflight: usize,
    pub write_high_water: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub shutdown_grace: Duration,
}

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
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_frame: config.max_frame,
            max_inflight: config.max_inflight.max(1),
            write_high_water: config.write_high_water,
            idle_timeout: config.idle_timeout,
            frame_timeout: config.frame_timeout,
            shutdown_grace: config.shutdown_grace,
        }
    }
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
    /// `handler`, until `stop`.
    pub fn spawn(
        self,
        config: &Config,
        handler: Handler,
        stop: &Stop,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let limits = Limits::from_config(config);
        self.parts
            .into_iter()
            .enumerate()
            .map(|(index, (poll, mailbox, inbox))| {
                Reactor {
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
                }
                .spawn()
            })
            .collect()
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
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let timeout = if drain_deadline.is_some() {
                Duration::from_millis(20)
            } else {
                Duration::from_secs(1)
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    WAKER_TOKEN => woken = true,
                    // Events are hints: drive the connection and let it find
                    // out what it can do.
                    Token(slot) => self.drive(slot),
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
        for completion in self
            .inbox
            .completions
            .try_iter()
            .take(COMPLETIONS_PER_ROUND)
        {
            let origin = completion.origin;
            let Some(conn) = self.conns.get_mut(origin.conn.slot) else {
                continue;
            };
            if conn.generation != origin.conn.generation || conn.closed {
                continue; // its connection is gone
            }
            conn.inflight -= 1;
            completion.reply.for_version(conn.version).encode(
                origin.opcode,
                origin.id,
                &mut conn.wbuf,
            );
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

    /// Does everything a connection can do now: decode buffered frames, read
    /// while not paused, write, and close when finished.
    fn drive(&mut self, slot: usize) {
        let limits = &self.limits;
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.closed {
            return;
        }
        let me = ConnRef {
            reactor: self.index,
            slot,
            generation: conn.generation,
        };
        let mut failed = None;
        loop {
            decode_frames(conn, me, &self.handler, limits);
            if conn.paused(limits.max_inflight, limits.write_high_water) || conn.eof {
                break;
            }
            match conn.read_chunk(&mut self.scratch[..]) {
                Ok(ReadOutcome::Data) => {}
                Ok(ReadOutcome::WouldBlock) => break,
                Ok(ReadOutcome::Eof) => conn.eof = true,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // A frame begun and not finished starts the slowloris clock; one
        // that waits only because the connection is paused does not.
        if conn.rbuf.is_empty() || conn.paused(limits.max_inflight, limits.write_high_water) {
            conn.partial_since = None;
        } else if conn.partial_since.is_none() {
            conn.partial_since = Some(Instant::now());
        }
        if conn.closing && failed.is_none() {
            failed = conn.discard_input(&mut self.scratch[..]).err();
        }
        if failed.is_none() {
            if let Err(e) = conn.flush() {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            debug!("connection {:?}: {e}", conn.peer);
            self.close(slot);
        } else if conn.finished() {
            self.close(slot);
        } else {
            conn.shrink();
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.closed {
            return;
        }
        conn.closed = true;
        let _ = self.poll.registry().deregister(&mut conn.socket);
        self.closed.push(slot);
        metrics::sub(&self.handler.metrics.connections_open, 1);
    }

    /// Frees closed slots. Done after a whole round of events, so that a
    /// stale event in the same round cannot reach a new connection that
    /// reused the slot.
    fn free_closed(&mut self) {
        for slot in self.closed.drain(..) {
            self.conns.remove(slot);
        }
    }

    /// Closes connections that sent nothing for the idle timeout, and tells
    /// those that left a frame unfinished for the frame timeout why they are
    /// closed.
    fn close_idle(&mut self) {
        let idle = self.limits.idle_timeout;
        let frame_timeout = self.limits.frame_timeout;
        let mut stale = Vec::new();
        let mut slow = Vec::new();
        for (slot, c) in self.conns.iter() {
            if c.closed || c.closing {
                continue;
            }
            if c.partial_since
                .is_some_and(|t| t.elapsed() >= frame_timeout)
            {
                slow.push(slot);
            } else if c.inflight == 0 && c.last_read.elapsed() >= idle {
                stale.push(slot);
            }
        }
        for slot in stale {
            debug!("closing idle connection {:?}", self.conns[slot].peer);
            self.close(slot);
        }
        for slot in slow {
            let conn = &mut self.conns[slot];
            debug!("closing connection {:?}: frame not completed", conn.peer);
            metrics::add(&self.handler.metrics.frame_timeouts, 1);
            let message = format!("a frame was not completed within {frame_timeout:?}");
            Reply::error(Status::BadRequest, message).encode(
                Opcode::Error as u8,
                0,
                &mut conn.wbuf,
            );
            conn.closing = true;
            conn.rbuf.clear();
            self.drive(slot);
        }
    }

    /// Shutdown: read no new requests; finish what is in flight; close.
    fn start_drain(&mut self) {
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.conns[slot].closing = true;
            self.drive(slot);
        }
    }
}

/// Decodes and handles whole frames from the read buffer while the
/// connection is not paused.
fn decode_frames(conn: &mut Connection, me: ConnRef, handler: &Handler, limits: &Limits) {
    while !conn.paused(limits.max_inflight, limits.write_high_water) {
        // The frame borrows the read buffer; the buffer is advanced only
        // after it is handled, so the body is never copied.
        let rbuf = std::mem::take(&mut conn.rbuf);
        let result = Frame::parse(&rbuf, limits.max_frame);
        let used = match result {
            Ok((frame, used)) => {
                handler.handle(conn, me, &frame);
                Some(used)
            }
            Err(FrameError::Incomplete) => None,
            Err(e @ (FrameError::TooLarge { .. } | FrameError::TooShort { .. })) => {
                // The stream cannot be resynchronised: say why, then close.
                metrics::add(&handler.metrics.bad_requests, 1);
                Reply::error(Status::BadRequest, e.to_string()).encode(
                    Opcode::Error as u8,
                    0,
                    &mut conn.wbuf,
                );
                conn.closing = true;
                None
            }
        };
        conn.rbuf = rbuf;
        match used {
            Some(n) => conn.rbuf.advance(n),
            None => break,
        }
    }
    if conn.closing {
        conn.rbuf.clear();
    }
}
