//! The read side of a reactor's turn: driving a connection, which reads,
//! decodes and handles its requests, within its budget for the turn.
//!
//! mio is edge-triggered: a readiness event is a hint that comes once, and
//! new bytes bring a new one. So a connection is read until a read comes
//! back short (the socket is drained: reading again would only return
//! `WouldBlock`), unless it is paused (too much in flight, too much unsent)
//! or has used its budget of requests for this turn of the loop (its own,
//! `--requests-per-turn`, or what is left of the reactor's,
//! [`REQUESTS_PER_REACTOR_TURN`](super::REQUESTS_PER_REACTOR_TURN)). A
//! paused connection is driven again when a completion or a drained write
//! un-pauses it, and one over its budget with more to do joins the
//! [`Backlog`](super::backlog::Backlog), driven in the next turns in round
//! robin after those turns' events (with a share of each turn held for it),
//! since no new event will come for bytes already waiting in the socket.

use std::time::Instant;

use bytes::Buf;
use log::debug;
use seckill_proto::{Frame, FrameError, Reply, Status};

use super::connection::{Connection, ReadOutcome};
use super::input_budget::count_input;
use super::limits::Limits;
use super::requests::Handler;
use super::Reactor;
use crate::dispatch::ConnRef;
use crate::metrics;

impl Reactor {
    /// Does everything a connection can do now but write: decode buffered
    /// frames and read while not paused, within the turn's request budget.
    /// Writing (and closing when finished) waits for [`settle`](Self::settle)
    /// at the end of the turn.
    pub(super) fn drive(&mut self, slot: usize) {
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
        // Both budgets: what is left of the connection's for this turn and
        // of the turn's.
        if conn.taken_in != self.turn_no {
            conn.taken_in = self.turn_no;
            conn.taken = 0;
        }
        let allowed = self.turn.allow(limits.requests_per_turn - conn.taken);
        let mut budget = allowed;
        let mut failed = None;
        loop {
            let turn = (self.turn_started, &mut self.answered);
            budget = decode_frames(conn, me, &self.handler, limits, budget, turn);
            if budget == 0
                || !conn.readable
                || conn.input_ended()
                || conn.paused(limits.max_inflight, limits.write_high_water)
            {
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
        self.turn.spend(allowed - budget);
        conn.taken += allowed - budget;
        let paused = conn.paused(limits.max_inflight, limits.write_high_water);
        // A frame begun and not finished starts the slowloris clock; one
        // that waits only because the connection is paused or out of
        // budget does not. A frame finished restarts it: what is left is
        // the next one's beginning, and the clock times each frame, not how
        // long the buffer has not been empty (a steady client whose writes
        // do not end on frame boundaries never empties it).
        if conn.rbuf.is_empty() || paused || budget == 0 {
            conn.partial_since = None;
        } else if budget < allowed || conn.partial_since.is_none() {
            conn.partial_since = Some(Instant::now());
        }
        // Out of budget with more to do: frames buffered, bytes perhaps
        // waiting in the socket (or, with the turn's budget spent before it
        // began, an event not yet acted on), or the end of input still to
        // be found by a decode. No event will say so: come back next turn,
        // in turn. One whose request used its budget exactly and that has
        // nothing more waits for its next event instead of a place.
        let more = conn.readable || !conn.rbuf.is_empty() || conn.input_ended();
        if budget == 0 && more && !paused && !conn.again {
            conn.again = true;
            self.again.push((slot, conn.generation), conn.taken > 0);
        }
        if conn.closing && failed.is_none() {
            failed = conn.discard_input(&mut self.scratch[..]).err();
            // More input than a turn drops: the rest next turn, in turn (no
            // event will say it is there), until the peer's end.
            if failed.is_none() && conn.readable && !conn.eof && !conn.again {
                conn.again = true;
                self.again.push((slot, conn.generation), true);
            }
        }
        count_input(
            conn,
            &mut self.input_mine,
            &self.input_bytes,
            &self.handler.metrics,
        );
        if let Some(e) = failed {
            debug!("connection {:?}: {e}", conn.peer);
            self.close(slot);
        } else if conn.lingered_enough() {
            debug!("connection {:?}: still sending after its close", conn.peer);
            self.close(slot);
        } else if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }
}

/// Decodes and handles whole frames from the read buffer while the
/// connection is not paused, at most `budget` of them, in the turn that
/// started at `turn.0`, noting the replies made on the spot in `turn.1`.
/// Returns the budget left.
fn decode_frames(
    conn: &mut Connection,
    me: ConnRef,
    handler: &Handler,
    limits: &Limits,
    mut budget: usize,
    (read_at, answered): (Instant, &mut Vec<(u8, Status)>),
) -> usize {
    while budget > 0 && !conn.paused(limits.max_inflight, limits.write_high_water) {
        // The frame borrows the read buffer; the buffer is advanced only
        // after it is handled, so the body is never copied.
        let rbuf = std::mem::take(&mut conn.rbuf);
        let result = Frame::parse(&rbuf, limits.max_frame);
        let used = match result {
            Ok((frame, used)) => {
                handler.handle(conn, me, &frame, read_at, answered);
                budget -= 1;
                Some(used)
            }
            Err(FrameError::Incomplete) => {
                if conn.input_ended() {
                    // No whole frame is left and no more bytes will come:
                    // what remains is a frame that can never be finished.
                    conn.closing = true;
                }
                None
            }
            Err(e @ (FrameError::TooLarge { .. } | FrameError::TooShort { .. })) => {
                // The stream cannot be resynchronised: say why, then close.
                metrics::add(&handler.metrics.bad_requests, 1);
                conn.give_up(Reply::error(Status::BadRequest, e.to_string()));
                None
            }
        };
        conn.rbuf = rbuf;
        match used {
            Some(n) => {
                conn.rbuf.advance(n);
                conn.served += n;
            }
            None => break,
        }
    }
    if conn.closing {
        conn.rbuf.clear();
    }
    budget
}
