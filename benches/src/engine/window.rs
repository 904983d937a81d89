//! The requests a connection has in flight, by request id.
//!
//! Ids are handed out in increasing order, one per request. The seckill
//! server may answer out of order (matched by id); Redis answers in order
//! (the oldest request is the one answered). Both are served by a deque of
//! slots starting at the oldest id still unanswered.

use std::collections::VecDeque;
use std::time::Instant;

use super::Op;

/// One request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub op: Op,
    /// When its latency is counted from: when it was sent (closed loop) or
    /// when it was scheduled (open loop, a timed workload, a retry).
    pub since: Instant,
    /// Earlier tries of the same request, answered `busy`.
    pub retries: u32,
}

#[derive(Debug)]
pub struct Window {
    /// Id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<Pending>>,
    live: usize,
}

impl Window {
    pub fn new(first_id: u64) -> Window {
        Window {
            base: first_id,
            slots: VecDeque::new(),
            live: 0,
        }
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The id the next request gets.
    pub fn next_id(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    /// Puts a request in flight under [`Window::next_id`].
    pub fn push(&mut self, pending: Pending) -> u64 {
        let id = self.next_id();
        self.slots.push_back(Some(pending));
        self.live += 1;
        id
    }

    /// The request with this id, if it is in flight.
    pub fn take(&mut self, id: u64) -> Option<Pending> {
        let index = usize::try_from(id.checked_sub(self.base)?).ok()?;
        let pending = self.slots.get_mut(index)?.take()?;
        self.live -= 1;
        self.trim();
        Some(pending)
    }

    /// The oldest request in flight.
    pub fn take_oldest(&mut self) -> Option<Pending> {
        self.trim();
        let pending = self.slots.pop_front()??;
        self.base += 1;
        self.live -= 1;
        self.trim();
        Some(pending)
    }

    /// Forgets every request in flight (their connection is gone, or the
    /// run stopped) and returns them.
    pub fn clear(&mut self) -> Vec<Pending> {
        self.base = self.next_id();
        self.live = 0;
        self.slots.drain(..).flatten().collect()
    }

    fn trim(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            op: Op::ListGoods,
            since: Instant::now(),
            retries: 0,
        }
    }

    #[test]
    fn out_of_order_replies_are_matched_by_id() {
        let mut w = Window::new(2);
        let ids: Vec<u64> = (0..4).map(|_| w.push(pending())).collect();
        assert_eq!(ids, [2, 3, 4, 5]);
        assert!(w.take(4).is_some());
        assert!(w.take(4).is_none(), "answered twice");
        assert!(w.take(9).is_none(), "never sent");
        assert!(w.take(1).is_none(), "before the window");
        assert_eq!(w.len(), 3);
        assert!(w.take(2).is_some());
        assert!(w.take(3).is_some());
        assert_eq!(w.len(), 1);
        assert_eq!(w.push(pending()), 6);
        assert!(w.take(5).is_some() && w.take(6).is_some());
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn in_order_replies_take_the_oldest() {
        let mut w = Window::new(1);
        for _ in 0..3 {
            w.push(pending());
        }
        assert!(w.take(2).is_some());
        assert!(w.take_oldest().is_some());
        assert!(w.take_oldest().is_some());
        assert!(w.take_oldest().is_none());
        assert_eq!(w.next_id(), 4);
    }

    #[test]
    fn clear_counts_what_was_lost() {
        let mut w = Window::new(1);
        w.push(pending());
        w.push(pending());
        assert_eq!(w.clear().len(), 2);
        assert_eq!(w.len(), 0);
        assert_eq!(w.push(pending()), 3);
    }
}
