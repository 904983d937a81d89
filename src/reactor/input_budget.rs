//! The budget of buffered input: what the read buffers of all connections
//! hold together (frames begun and not finished, and whole frames waiting
//! while their connection is paused).
//!
//! One connection's buffer is bounded by a frame and a read chunk
//! (`--max-frame`), but all of them together only by the number of
//! connections: a peer that begins a frame of the largest size on each of
//! its connections, and trickles it, holds that much per connection for up
//! to the frame timeout, and a few addresses at their connection limit
//! hold gigabytes. The reactors share a count of buffered input bytes;
//! past `--input-budget` each closes its connections holding the largest
//! unfinished frames, with an error frame, until the total is back under
//! it or its own connections hold no more than their share (each reactor
//! keeps a count of its own, so that a turn under the budget, or under its
//! share, costs a comparison).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use log::debug;
use seckill_proto::{Reply, Status};

use super::connection::Connection;
use super::write::recount;
use super::Reactor;
use crate::metrics::{self, Metrics};

/// An unfinished frame shorter than this is never closed for the budget:
/// no request of the protocol is as long (the longest, ADD_GOODS, takes
/// under 300 bytes), so it is an ordinary client's next request, cut by a
/// read.
const SMALLEST_CLOSED: usize = 1024;

/// How long a reactor over its share of the budget, with nothing it may
/// close, waits before it looks again.
const RESCAN_AFTER: Duration = Duration::from_millis(100);

impl Reactor {
    /// Over the input budget, closes this reactor's connections that hold
    /// the largest unfinished frames (of [`SMALLEST_CLOSED`] bytes or more),
    /// largest first, until the total is under it or this reactor's
    /// connections hold no more than its share. Their buffered input is
    /// dropped at once; the connection is told why (`busy`) after the
    /// replies to its requests in flight, and closes as after a bad frame.
    pub(super) fn keep_input_budget(&mut self) {
        let budget = self.limits.input_budget;
        let over = |r: &Reactor| {
            r.input_bytes.load(Ordering::Relaxed) > budget && r.input_mine > r.input_share
        };
        if !over(self) {
            return;
        }
        // Over it with nothing to close (whole frames of paused
        // connections, unfinished ones under the floor): looked at again
        // only now and then, not at every turn.
        if self
            .input_unclosable_at
            .is_some_and(|at| at.elapsed() < RESCAN_AFTER)
        {
            return;
        }
        let mut heavy: Vec<(usize, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.closed
                    && !c.closing
                    && c.partial_since.is_some()
                    && c.rbuf.len() >= SMALLEST_CLOSED
            })
            .map(|(slot, c)| (c.rbuf.len(), slot))
            .collect();
        heavy.sort_unstable_by(|a, b| b.cmp(a));
        self.input_unclosable_at = heavy.is_empty().then(Instant::now);
        for (held, slot) in heavy {
            if !over(self) {
                break;
            }
            let conn = &mut self.conns[slot];
            debug!(
                "closing connection {:?}: {held} bytes of an unfinished frame",
                conn.peer
            );
            metrics::add(&self.handler.metrics.input_budget_closes, 1);
            self.freed += conn.rbuf.capacity();
            conn.rbuf = BytesMut::new();
            conn.served = 0;
            conn.partial_since = None;
            conn.give_up(Reply::error(
                Status::Busy,
                "too much unfinished input buffered on this server: closing this connection",
            ));
            count_input(
                conn,
                &mut self.input_mine,
                &self.input_bytes,
                &self.handler.metrics,
            );
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        }
    }
}

/// Brings this reactor's count of buffered input bytes (`mine`), the
/// shared one and its copy in the metrics (for STATS) up to date with
/// `conn`'s.
pub(super) fn count_input(
    conn: &mut Connection,
    mine: &mut usize,
    total: &AtomicUsize,
    metrics: &Metrics,
) {
    let now = conn.rbuf.len();
    // `mine` holds what was counted for `conn`: never below it.
    *mine = *mine - conn.counted_input + now;
    recount(
        now,
        &mut conn.counted_input,
        total,
        &metrics.buffered_input_bytes,
    );
}
