//! What a reactor holds its connections to: the limits from the
//! configuration, the shared budget of unsent reply bytes, and the idle and
//! frame timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use log::debug;
use seckill_proto::{Opcode, Reply, Status};

use super::connection::Connection;
use super::Reactor;
use crate::config::Config;
use crate::metrics::{self, Metrics};

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
        }
    }
}

impl Reactor {
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
            // Its unread replies go; the error frame alone gets one try,
            // since the peer may have read a little since.
            conn.wbuf = BytesMut::new();
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

    /// Closes connections that sent nothing for the idle timeout, and tells
    /// those that left a frame unfinished for the frame timeout why they are
    /// closed.
    pub(super) fn close_idle(&mut self) {
        let idle = self.limits.idle_timeout;
        let frame_timeout = self.limits.frame_timeout;
        let mut stale = Vec::new();
        let mut slow = Vec::new();
        for (slot, c) in self.conns.iter() {
            if c.closed {
                continue;
            }
            if c.closing {
                // Every answer made, waiting only to flush its last replies
                // and error frame to a peer that may never read them: given
                // a frame timeout.
                if c.inflight == 0 && c.last_read.elapsed() >= frame_timeout {
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
}

/// Brings the shared count of unsent reply bytes (and its copy in the
/// metrics, for STATS) up to date with `conn`'s.
pub(super) fn count_replies(conn: &mut Connection, total: &AtomicUsize, metrics: &Metrics) {
    let now = conn.wbuf.len();
    if now > conn.counted {
        total.fetch_add(now - conn.counted, Ordering::Relaxed);
        metrics::add(&metrics.unsent_reply_bytes, (now - conn.counted) as u64);
    } else if now < conn.counted {
        total.fetch_sub(conn.counted - now, Ordering::Relaxed);
        metrics::sub(&metrics.unsent_reply_bytes, (conn.counted - now) as u64);
    }
    conn.counted = now;
}
