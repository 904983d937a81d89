//! The write side of a reactor's turn: each connection's replies written
//! once at the end of the turn, finished connections closed and their slots
//! freed, and the shared budget of unsent reply bytes kept.
//!
//! Replies are written once per connection per turn, after the turn's
//! events and completions are handled ([`Reactor::settle`]), so that a
//! connection answered both at once and by a worker costs one write.
//!
//! Memory: a connection over its `--write-high-water` mark is not read
//! (`Connection::paused`). The reactors share a count of unsent reply
//! bytes; past `--reply-budget` each closes its connections that do not
//! read, most unsent first, with an error frame.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::BytesMut;
use log::debug;
use seckill_proto::{Opcode, Reply, Status};

use super::connection::Connection;
use super::input_budget::count_input;
use super::Reactor;
use crate::metrics::{self, Metrics};

impl Reactor {
    /// The end of a turn: writes what each connection driven this turn has
    /// to send (one write each, the socket permitting), closes those that
    /// are finished, and counts their unsent replies.
    pub(super) fn settle(&mut self) {
        // First, so that what it closes is flushed below, in this turn.
        self.keep_input_budget();
        let (max_inflight, high_water) = (self.limits.max_inflight, self.limits.write_high_water);
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            conn.dirty = false;
            if conn.closed {
                continue;
            }
            let was_paused = conn.paused(max_inflight, high_water);
            if let Err(e) = conn.flush() {
                debug!("connection {:?}: {e}", conn.peer);
                self.close(slot);
                continue;
            }
            if conn.finished() && conn.close_now() {
                self.close(slot);
                continue;
            }
            self.freed += conn.shrink();
            count_replies(conn, &self.reply_bytes, &self.handler.metrics);
            if was_paused && !conn.paused(max_inflight, high_water) && !conn.again {
                // Under its mark again: what waits in the socket or the read
                // buffer will bring no event of its own.
                // At the back of the line, as one served.
                conn.again = true;
                self.again.push((slot, conn.generation), true);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    pub(super) fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.closed {
            return;
        }
        conn.closed = true;
        self.freed += conn.rbuf.capacity() + conn.wbuf.capacity();
        conn.rbuf = BytesMut::new();
        conn.wbuf = BytesMut::new();
        count_replies(conn, &self.reply_bytes, &self.handler.metrics);
        count_input(
            conn,
            &mut self.input_mine,
            &self.input_bytes,
            &self.handler.metrics,
        );
        let _ = self.poll.registry().deregister(&mut conn.socket);
        self.closed.push(slot);
        metrics::sub(&self.handler.metrics.connections_open, 1);
    }

    /// Frees closed slots. Done after a whole round of events, so that a
    /// stale event in the same round cannot reach a new connection that
    /// reused the slot.
    pub(super) fn free_closed(&mut self) {
        for slot in self.closed.drain(..) {
            self.conns.remove(slot);
        }
    }

    /// Over the shared reply budget, closes this reactor's connections that
    /// do not read, most unsent bytes first, until the total is back under
    /// it or this reactor's connections hold no more than its share (the
    /// other reactors do the same with theirs).
    pub(super) fn keep_reply_budget(&mut self) {
        let budget = self.limits.reply_budget;
        if self.reply_bytes.load(Ordering::Relaxed) <= budget {
            return;
        }
        let mut mine: usize = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(_, c)| c.wbuf.len())
            .sum();
        let mut heavy: Vec<(usize, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closed && c.not_reading())
            .map(|(slot, c)| (c.wbuf.len(), slot))
            .collect();
        heavy.sort_unstable_by(|a, b| b.cmp(a));
        for (unsent, slot) in heavy {
            if self.reply_bytes.load(Ordering::Relaxed) <= budget || mine <= self.reply_share {
                break;
            }
            mine -= unsent;
            let conn = &mut self.conns[slot];
            debug!(
                "closing connection {:?}: {} reply bytes unread",
                conn.peer,
                conn.wbuf.len()
            );
            metrics::add(&self.handler.metrics.reply_budget_closes, 1);
            // Its unread replies go (but for the end of one it has begun to
            // receive, which the frame must follow); the error frame gets
            // one try, since the peer may have read a little since.
            conn.drop_unsent();
            Reply::error(
                Status::Busy,
                "too many replies left unread on this connection: closing it",
            )
            .encode(Opcode::Error as u8, 0, &mut conn.wbuf);
            conn.writable = true;
            let _ = conn.flush();
            self.close(slot);
        }
    }
}

/// Brings the shared count of unsent reply bytes (and its copy in the
/// metrics, for STATS) up to date with `conn`'s.
pub(super) fn count_replies(conn: &mut Connection, total: &AtomicUsize, metrics: &Metrics) {
    let now = conn.wbuf.len();
    recount(now, &mut conn.counted, total, &metrics.unsent_reply_bytes);
}

/// Brings a total the reactors share, and its gauge, up to date with what
/// one connection holds `now`, `counted` being what it held when last
/// counted.
pub(super) fn recount(now: usize, counted: &mut usize, total: &AtomicUsize, gauge: &AtomicU64) {
    if now > *counted {
        total.fetch_add(now - *counted, Ordering::Relaxed);
        metrics::add(gauge, (now - *counted) as u64);
    } else if now < *counted {
        total.fetch_sub(*counted - now, Ordering::Relaxed);
        metrics::sub(gauge, (*counted - now) as u64);
    }
    *counted = now;
}
