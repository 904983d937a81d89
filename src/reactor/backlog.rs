//! The connections a reactor must come back to without an event: those with
//! requests left over when their budget or the turn's ran out, and those a
//! write un-paused with input perhaps waiting in the socket.
//!
//! A turn serves the connections that had events first, then the backlog's
//! line, each within the turn's budget of requests ([`TurnBudget`]). Three
//! rules make that fair:
//!
//! - **The events share their part of the turn equally.** Each connection
//!   with an event (and no place in the line) may take an equal share of
//!   what the events may take (at least one request, since a poll returns
//!   no more events than that), and joins the line only if it has more. So
//!   a client with a request waiting is served in the turn its event comes,
//!   however many connections with more to send have events in the same
//!   turn: before, the first of them took the turn's budget, 64 requests
//!   each, and a normal client behind them waited in the line with the
//!   heavy ones. (A connection already in the line has its event noted and
//!   is served in its place.)
//! - **The line is a round robin.** A connection that got nothing (the
//!   budget was spent before its place came) keeps its place ahead of those
//!   that were served and still have more. Without that, the same few
//!   pipelining connections at the head took the whole budget turn after
//!   turn, and every connection behind them, a normal client's among them,
//!   waited until those few were paused or closed: 1,500 connections
//!   flooding GET_GOODS held a normal client's requests unread for over a
//!   second (BENCHMARKS.md, issue 15).
//! - **The line has a share of every turn.** While it is not empty, the
//!   events may take only three quarters of the turn; the rest
//!   ([`LINE_SHARE`]) is the line's, with whatever the events left.
//!   Without that, a steady stream of connections with events (a
//!   reconnecting flood, thousands of clients sending a request each) could
//!   take every turn's whole budget, and the line would never move.
//!
//! Events first, because a connection with an event and no backlog is one
//! that emptied its socket last time it was read: a client with a request
//! or a few, served within the turn its request arrives.
//!
//! The line is made when the turn begins, from what was pushed the turn
//! before: a connection pushed during this turn waits for the next, so that
//! none is driven twice in one turn (a connection's `--requests-per-turn` is
//! per turn, not per pass).
//!
//! The bound this gives: each turn the line may take at least a quarter of
//! the turn's requests, and a connection takes at most its own per-turn
//! budget, so at least `max(1, total / LINE_SHARE / per_connection)`
//! connections at the head of the line are served each turn (1024 / 4 / 64
//! = 4 with the defaults), and the one at place `p` (from 0) is served
//! within the first `p / 4 + 1` turns.

use std::collections::VecDeque;

/// The line's share of each turn while anyone waits in it: a quarter of the
/// budget (`total / LINE_SHARE`), held back from the events. The events are
/// light clients, most with one request each; the line is the heavy ones
/// and whoever a burst of events left out, and its quarter keeps it moving.
pub(super) const LINE_SHARE: usize = 4;

/// A connection waiting in the backlog: its slot, and the generation of the
/// connection that was in the slot when it was pushed. The line outlives
/// turns, and a closed connection's slot may hold a new one by the time its
/// place comes: the caller skips a place whose generation is not the slot's.
pub(super) type Place = (usize, u64);

/// Connections to drive in this turn and the next ones, in order. Each
/// connection is here at most once: the caller marks it
/// (`Connection::again`) when it pushes it and clears the mark when it
/// takes it back.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// This turn's line, served from the front. What the turn's budget
    /// did not reach stays at the front for the next turn.
    line: VecDeque<Place>,
    /// Pushed this turn without having been served (the budget was spent
    /// before them): next turn, behind what is left of the line.
    starved: Vec<Place>,
    /// Pushed this turn after being served, with more to do: at the back.
    served: Vec<Place>,
}

impl Backlog {
    /// Adds a connection for a later turn: `served` if it took requests
    /// this turn (it goes to the back of the line), not if the turn's
    /// budget ran out before its place (it keeps its place, ahead of the
    /// served).
    pub(super) fn push(&mut self, place: Place, served: bool) {
        if served {
            self.served.push(place);
        } else {
            self.starved.push(place);
        }
    }

    /// Nothing to drive without an event, this turn or later.
    pub(super) fn is_empty(&self) -> bool {
        self.line.is_empty() && self.starved.is_empty() && self.served.is_empty()
    }

    /// Begins a turn: what was pushed during the last one joins the line,
    /// behind what the line still holds, the starved before the served.
    /// Returns the turn's budget: `total` requests, of which the events may
    /// take only their share if the line has anyone waiting.
    pub(super) fn begin_turn(&mut self, total: usize) -> TurnBudget {
        self.line.extend(self.starved.drain(..));
        self.line.extend(self.served.drain(..));
        let held = if self.line.is_empty() {
            0
        } else {
            total / LINE_SHARE
        };
        TurnBudget {
            left: total - held,
            held,
            each: usize::MAX,
        }
    }

    /// The next connection of this turn's line, while the turn has budget
    /// for it; `None` once the line or the budget is used up.
    pub(super) fn next(&mut self, budget: &TurnBudget) -> Option<Place> {
        if budget.left() == 0 {
            return None;
        }
        self.line.pop_front()
    }
}

/// What is left of a turn's budget of requests. The line's share is held
/// back from the events until [`TurnBudget::release_line_share`], and each
/// connection with an event may take only its share of the events' part
/// ([`TurnBudget::share_among`]).
#[derive(Debug)]
pub(super) struct TurnBudget {
    left: usize,
    held: usize,
    /// The most one connection may take in this pass.
    each: usize,
}

impl TurnBudget {
    /// A budget with nothing held back (for tests, and before a reactor's
    /// first turn).
    pub(super) fn new(total: usize) -> TurnBudget {
        TurnBudget {
            left: total,
            held: 0,
            each: usize::MAX,
        }
    }

    /// Requests the turn may still take (the line's share not counted
    /// until released).
    pub(super) fn left(&self) -> usize {
        self.left
    }

    /// The events pass: `events` connections have events, and each may
    /// take an equal share of what is left (at least one request; the
    /// caller polls no more events than the events' part of a turn).
    pub(super) fn share_among(&mut self, events: usize) {
        self.each = (self.left / events.max(1)).max(1);
    }

    /// What a connection whose own budget is `per_connection` may take now.
    pub(super) fn allow(&self, per_connection: usize) -> usize {
        per_connection.min(self.each).min(self.left)
    }

    /// Counts `n` requests taken (no more than [`allow`](Self::allow) gave).
    pub(super) fn spend(&mut self, n: usize) {
        self.left -= n;
    }

    /// The events are done: the line gets its share and what they left,
    /// each connection of it up to its own budget.
    pub(super) fn release_line_share(&mut self) {
        self.left += std::mem::take(&mut self.held);
        self.each = usize::MAX;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const TOTAL: usize = 1024;
    const PER_CONN: usize = 64;

    /// The reactor's side of the backlog, as in its loop: a connection is
    /// in the backlog at most once (its `again` mark).
    #[derive(Default)]
    struct Sim {
        backlog: Backlog,
        again: HashSet<usize>,
    }

    impl Sim {
        fn push(&mut self, slot: usize, served: bool) {
            if self.again.insert(slot) {
                self.backlog.push((slot, 0), served);
            }
        }

        /// One turn: `events` connections with an event, then the line;
        /// every connection has endless requests, and is pushed back with
        /// its budget used. Returns the slots served, in order.
        fn turn(&mut self, events: std::ops::Range<usize>) -> Vec<usize> {
            // No more events than a poll returns (EVENTS_PER_POLL).
            assert!(events.len() <= TOTAL - TOTAL / LINE_SHARE);
            let mut budget = self.backlog.begin_turn(TOTAL);
            let fresh = events.clone().filter(|s| !self.again.contains(s)).count();
            budget.share_among(fresh);
            let mut served = Vec::new();
            for slot in events {
                if !self.again.contains(&slot) {
                    self.drive(slot, &mut budget, &mut served);
                }
            }
            budget.release_line_share();
            while let Some((slot, _)) = self.backlog.next(&budget) {
                self.again.remove(&slot);
                self.drive(slot, &mut budget, &mut served);
            }
            served
        }

        fn drive(&mut self, slot: usize, budget: &mut TurnBudget, served: &mut Vec<usize>) {
            let allowed = budget.allow(PER_CONN);
            budget.spend(allowed);
            if allowed > 0 {
                served.push(slot);
            }
            self.push(slot, allowed > 0);
        }
    }

    /// How many turns each of `0..heavy` was served in, over `turns` turns
    /// with no events.
    fn line_only(heavy: usize, turns: usize) -> Vec<usize> {
        let mut sim = Sim::default();
        for slot in 0..heavy {
            sim.push(slot, false);
        }
        let mut count = vec![0; heavy];
        for _ in 0..turns {
            for slot in sim.turn(0..0) {
                count[slot] += 1;
            }
        }
        count
    }

    #[test]
    fn every_connection_of_a_long_line_is_served_in_turn() {
        // 750 flooding connections, 64 requests each per turn, 1024 per
        // turn: 16 are served a turn, so every one within 47 turns, and over
        // 375 turns (6,000 services) each exactly 8 times.
        let served = line_only(750, 375);
        assert!(served.iter().all(|&n| n == 8), "{served:?}");
        let served = line_only(750, 47);
        assert!(
            served.iter().all(|&n| n >= 1),
            "some never served: {served:?}"
        );
    }

    #[test]
    fn the_line_moves_under_a_flood_of_events() {
        // 100 connections wait in the line; every turn, 700 new connections
        // have events (a reconnecting flood), each with more than the turn
        // can take. The line's quarter (256, and the 68 the events leave)
        // serves at least 4 of it a turn: all 100 within 25 turns, in the
        // order they waited.
        let mut sim = Sim::default();
        for slot in 0..100 {
            sim.push(slot, false);
        }
        let mut first_served = vec![None; 100];
        for t in 0..25 {
            let flood = 1000 * (t + 1);
            for slot in sim.turn(flood..flood + 700) {
                if slot < 100 && first_served[slot].is_none() {
                    first_served[slot] = Some(t);
                }
            }
        }
        for (slot, t) in first_served.iter().enumerate() {
            let t = t.unwrap_or_else(|| panic!("slot {slot} never served"));
            assert!(t <= slot / 4, "slot {slot} first served in turn {t}");
        }
        let order: Vec<usize> = first_served.iter().map(|t| t.unwrap_or(0)).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    }

    #[test]
    fn every_connection_with_an_event_is_served_in_its_turn() {
        // 700 connections with events, each with more than a turn can take,
        // and a line waiting: the events' part (768) is shared, one each,
        // instead of 64 each to the first 12. The rest of each joins the
        // line, behind those that waited.
        let mut sim = Sim::default();
        sim.push(5000, false);
        let served = sim.turn(0..700);
        let expected: Vec<usize> = (0..700).chain([5000]).collect();
        assert_eq!(served, expected);
        // Next turn: their events are noted, not driven (they are in the
        // line, all served last turn, in the order they were); the whole
        // turn is the line's, 64 each.
        let served = sim.turn(0..700);
        assert_eq!(served, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn a_few_connections_with_events_take_their_whole_budget() {
        // 16 pipelining connections, nobody in the line: 64 each, the turn.
        let mut sim = Sim::default();
        assert_eq!(sim.turn(0..16), (0..16).collect::<Vec<_>>());
        let mut budget = Backlog::default().begin_turn(TOTAL);
        budget.share_among(16);
        assert_eq!(budget.allow(PER_CONN), 64);
        budget.share_among(100);
        assert_eq!(budget.allow(PER_CONN), 10);
        budget.release_line_share();
        assert_eq!(budget.allow(PER_CONN), 64);
    }

    #[test]
    fn a_connection_pushed_this_turn_waits_for_the_next() {
        let mut backlog = Backlog::default();
        backlog.push((1, 7), false);
        let mut budget = backlog.begin_turn(TOTAL);
        budget.release_line_share();
        assert_eq!(backlog.next(&budget), Some((1, 7)));
        backlog.push((1, 7), true); // served, with more
        backlog.push((2, 8), false); // an event left out
        assert_eq!(backlog.next(&budget), None, "pushed this turn");
        assert!(!backlog.is_empty());
        let mut budget = backlog.begin_turn(TOTAL);
        budget.release_line_share();
        assert_eq!(backlog.next(&budget), Some((2, 8)));
        assert_eq!(backlog.next(&budget), Some((1, 7)));
        assert_eq!(backlog.next(&budget), None);
        assert!(backlog.is_empty());
    }

    #[test]
    fn the_events_take_all_of_a_turn_only_when_nobody_waits() {
        let mut backlog = Backlog::default();
        let budget = backlog.begin_turn(TOTAL);
        assert_eq!(budget.left(), TOTAL);
        backlog.push((7, 1), false);
        let mut budget = backlog.begin_turn(TOTAL);
        assert_eq!(budget.left(), 768);
        budget.spend(768);
        assert_eq!(backlog.next(&budget), None, "the share is held back");
        budget.release_line_share();
        assert_eq!(budget.left(), 256);
        assert_eq!(backlog.next(&budget), Some((7, 1)));
    }
}
