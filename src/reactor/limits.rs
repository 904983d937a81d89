//! What a reactor holds its connections to: the limits from the
//! configuration, and the idle and frame timeouts. (The budget of unsent
//! reply bytes is kept on the write side, `write`; that of buffered input
//! in `input_budget`.)

use std::time::{Duration, Instant};

use log::debug;
use seckill_proto::{Reply, Status};

use super::Reactor;
use crate::config::Config;
use crate::metrics;

/// Limits a reactor enforces on each connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frame: u32,
    pub max_inflight: usize,
    pub write_high_water: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub shutdown_grace: Duration,
    pub requests_per_turn: usize,
    pub reply_budget: usize,
    pub input_budget: usize,
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
            requests_per_turn: config.requests_per_turn.max(1),
            reply_budget: config.reply_budget,
            input_budget: config.input_budget,
        }
    }
}

/// A connection that has sent nothing for this long is quiet: the read
/// buffer memory the sweep frees of it ([`Connection::compact_input`])
/// counts towards giving memory back to the system.
const QUIET: Duration = Duration::from_millis(500);

impl Reactor {
    /// Closes connections that sent nothing for the idle timeout, and tells
    /// those that left a frame unfinished for the frame timeout why they are
    /// closed; compacts the read buffers of the others.
    pub(super) fn close_idle(&mut self) {
        let idle = self.limits.idle_timeout;
        let frame_timeout = self.limits.frame_timeout;
        let mut stale = Vec::new();
        let mut slow = Vec::new();
        for (slot, c) in self.conns.iter_mut() {
            if c.closed {
                continue;
            }
            if c.closing {
                // Every answer made, waiting only to flush its last replies
                // and error frame to a peer that may never read them: given
                // a frame timeout from when a sweep first saw it so, not
                // from its last read (a peer that keeps sending and never
                // reads would be kept for ever). Not while a request is in
                // flight: the clock would have run out by the time a slow
                // store answered, and the sweep of that turn would close
                // the connection before its last reply and error frame
                // were written.
                if c.lingered_enough() {
                    stale.push(slot);
                } else if c.inflight > 0 {
                    c.closing_seen = None;
                } else if c.closing_seen.get_or_insert_with(Instant::now).elapsed() >= frame_timeout
                {
                    stale.push(slot);
                }
                continue;
            }
            if c.partial_since
                .is_some_and(|t| t.elapsed() >= frame_timeout)
            {
                slow.push(slot);
            } else if c.inflight == 0 && c.last_read.elapsed() >= idle {
                stale.push(slot);
            } else {
                // Every connection kept, a peer that trickles bytes to hold
                // its buffer included; what is freed counts towards giving
                // memory back to the system only for those gone quiet (a
                // busy one would take as much again at its next read, and
                // malloc would be asked to trim every second).
                let freed = c.compact_input();
                if c.last_read.elapsed() >= QUIET {
                    self.freed += freed;
                }
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
            conn.give_up(Reply::error(Status::BadRequest, message));
            conn.rbuf.clear();
            self.drive(slot);
        }
    }
}
