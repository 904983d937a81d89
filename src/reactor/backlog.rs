//! The connections a reactor must come back to without an event: those with
//! requests left over when a turn's budget ran out, and those a write
//! un-paused with input perhaps waiting in the socket.
//!
//! A turn serves the connections that had events first, then this backlog,
//! each within the turn's budget of requests. The backlog is a round robin:
//! a connection that got nothing last turn (the budget was spent before its
//! place came) keeps its place ahead of those that were served and still
//! have more. Without that, the same few pipelining connections at the head
//! took the whole budget turn after turn, and every connection behind them,
//! a normal client's among them, waited until those few were paused or
//! closed: 1,500 connections flooding GET_GOODS held a normal client's
//! requests unread for over a second (BENCHMARKS.md, issue 15).
//!
//! Events first, because a connection with an event and no backlog is one
//! that emptied its socket last time it was read: a client with a request
//! or a few, served within the turn its request arrives. The backlog's
//! connections are the ones with more than a turn's share to send; they
//! share what the turn has left, in turn.

/// Slots of connections to drive next turn, in the order they are to be
/// driven. Each slot is here at most once: the caller marks its connection
/// (`Connection::again`) when it pushes it and clears the mark when it
/// takes it back.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Got no budget this turn: first next turn, in the order they waited.
    starved: Vec<usize>,
    /// Served this turn, with more to do: after the starved ones.
    served: Vec<usize>,
}

impl Backlog {
    /// Adds a connection: `served` if it took requests this turn (it goes
    /// to the back of the line), not if the turn's budget ran out before
    /// its place (it keeps its place).
    pub(super) fn push(&mut self, slot: usize, served: bool) {
        if served {
            self.served.push(slot);
        } else {
            self.starved.push(slot);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.starved.is_empty() && self.served.is_empty()
    }

    /// Empties the backlog into the order for this turn: the starved, then
    /// the served.
    pub(super) fn take(&mut self) -> Vec<usize> {
        let mut order = std::mem::take(&mut self.starved);
        order.append(&mut self.served);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives `turns` turns over `heavy` connections that always have more
    /// than the turn can take, `per_conn` requests each at most, `budget`
    /// per turn; returns how many turns each connection was served in.
    fn simulate(heavy: usize, per_conn: usize, budget: usize, turns: usize) -> Vec<usize> {
        let mut backlog = Backlog::default();
        for slot in 0..heavy {
            backlog.push(slot, false);
        }
        let mut served = vec![0; heavy];
        for _ in 0..turns {
            let mut left = budget;
            for slot in backlog.take() {
                let allowed = per_conn.min(left);
                left -= allowed;
                if allowed > 0 {
                    served[slot] += 1;
                }
                backlog.push(slot, allowed > 0);
            }
        }
        served
    }

    #[test]
    fn every_connection_of_a_long_backlog_is_served_in_turn() {
        // 750 flooding connections, 64 requests each per turn, 1024 per
        // turn: 16 are served a turn, so every one within 47 turns, and over
        // 375 turns (6,000 services) each exactly 8 times.
        let served = simulate(750, 64, 1024, 375);
        assert!(served.iter().all(|&n| n == 8), "{served:?}");
        let served = simulate(750, 64, 1024, 47);
        assert!(
            served.iter().all(|&n| n >= 1),
            "some never served: {served:?}"
        );
    }

    #[test]
    fn the_starved_come_before_the_served() {
        let mut backlog = Backlog::default();
        backlog.push(1, true);
        backlog.push(2, false);
        backlog.push(3, true);
        backlog.push(4, false);
        assert!(!backlog.is_empty());
        assert_eq!(backlog.take(), vec![2, 4, 1, 3]);
        assert!(backlog.is_empty());
        assert_eq!(backlog.take(), Vec::<usize>::new());
    }
}
