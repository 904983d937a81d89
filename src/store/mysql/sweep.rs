//! The expiry sweep's read: created orders whose payment window has closed.
//!
//! A table made by this version has no index of all orders by due time:
//! `orders_by_goods (goods_id, state, pay_by_ms)` serves the reads by goods
//! and, in full, the sweep, one range per goods, and a second index cost
//! MariaDB about 2 µs of CPU per inserted order (BENCHMARKS.md, "one index
//! of a goods' orders, with the goods to sweep"). A range per goods costs
//! MariaDB 5-6 µs (read 500 goods to a statement), though, and the
//! catalogue only grows: so the sweep reads only the goods that may have
//! unpaid orders, by
//! `goods.unpaid_until_ms`, which every batch that writes created orders of
//! a goods raises (in the same statement as its epoch fence, on the row the
//! batch locks anyway) to their latest payment deadline, or to the time of
//! the write if that is later (a queued order written long after it was
//! made). A goods whose mark is older than the last complete sweep, less a
//! [`MARGIN`], had every order due by then read by it, and has had none
//! written since.
//!
//! The margin covers the clocks of the servers (the mark is the writing
//! server's time, the floor the sweeping one's) and a batch still open when
//! the sweep read; what it does not cover (a clock wrong by more, a
//! transaction held open that long) waits for the full sweep that reads
//! every goods at start and every [`FULL_EVERY`].
//!
//! What it still costs: each sweep (each second, on every server) reads the
//! ranges of every goods with an order in the last payment window and a
//! minute, due or not: 51-61 ms of MariaDB's CPU a sweep with 10,000 such
//! goods, 5-6 ms with 1,000, on the machine of BENCHMARKS.md, against about
//! 2 µs saved per order written.
//!
//! A table made before keeps `orders_due (state, pay_by_ms)`, read in one
//! range ([`DueIndex::Due`]).

use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use ::mysql::PooledConn;

use super::rows::{id_list, OrderRow, ORDER_COLUMNS};
use super::schema::DueIndex;
use crate::store::GoodsId;

/// How far behind the last complete sweep a goods' mark may be and the goods
/// still read.
pub(super) const MARGIN: Duration = Duration::from_secs(60);

/// How often every goods is read, whatever its mark.
pub(super) const FULL_EVERY: Duration = Duration::from_secs(600);

/// Goods per read of due orders: one range each in `orders_by_goods`, 5-6
/// µs of MariaDB's CPU a goods where a statement per goods cost 85
/// (BENCHMARKS.md). Under MariaDB's `in_predicate_conversion_threshold`
/// (1,000), at which an IN list becomes a join that reads every created
/// order of the goods, due or not.
const GOODS_PER_READ: usize = 500;

/// What one sweep reads: the goods whose mark is at least `floor`, from
/// goods `from` on, then the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sweep {
    pub(super) floor: u64,
    pub(super) from: GoodsId,
}

/// Which goods the next sweep reads. Each server's own (its sweeps run one
/// at a time, on its expiry thread).
#[derive(Debug)]
pub(super) struct SweepPlan {
    /// Unix ms: the time of the last complete sweep, less [`MARGIN`].
    floor_ms: u64,
    /// Where the next sweep begins: after the goods in whose due orders the
    /// last one stopped, so that a goods with a backlog of them does not
    /// keep the others waiting sweep after sweep.
    from: GoodsId,
    /// When the next sweep reads every goods (the first does).
    next_full: Instant,
}

impl SweepPlan {
    pub(super) fn new() -> SweepPlan {
        SweepPlan {
            floor_ms: 0,
            from: 0,
            next_full: Instant::now(),
        }
    }

    /// The sweep about to run: of every goods (floor 0) when a full sweep
    /// is due.
    pub(super) fn next(&self) -> Sweep {
        let floor = match Instant::now() >= self.next_full {
            true => 0,
            false => self.floor_ms,
        };
        Sweep {
            floor,
            from: self.from,
        }
    }

    /// The next sweep reads every goods.
    #[cfg(test)]
    pub(super) fn full_next(&mut self) {
        self.next_full = Instant::now();
    }

    /// `sweep`, at `now_ms`, read every due order of the goods it read
    /// (`stopped_in` `None`), or stopped at its maximum in those of goods
    /// `stopped_in`.
    pub(super) fn swept(&mut self, sweep: Sweep, now_ms: u64, stopped_in: Option<GoodsId>) {
        let Some(goods) = stopped_in else {
            self.floor_ms = now_ms.saturating_sub(MARGIN.as_millis() as u64);
            self.from = 0;
            if sweep.floor == 0 {
                self.next_full = Instant::now() + FULL_EVERY;
            }
            return;
        };
        self.from = goods.wrapping_add(1);
    }
}

/// Up to `max` created orders whose payment window closed by `now_ms`, by a
/// plain read through `index`: of the goods of `sweep`, one range each, in
/// groups of goods until `max` are found; or, through
/// `orders_due`, one range, oldest first in the index's order (an ORDER BY
/// of a column outside it would sort every due order before the LIMIT).
pub(super) fn due_orders(
    conn: &mut PooledConn,
    index: DueIndex,
    sweep: Sweep,
    now_ms: u64,
    max: usize,
) -> Result<Vec<OrderRow>, ::mysql::Error> {
    if index == DueIndex::Due {
        return conn.exec(
            format!(
                "SELECT {ORDER_COLUMNS} FROM orders FORCE INDEX (orders_due)
                 WHERE state = 0 AND pay_by_ms <= ? ORDER BY pay_by_ms LIMIT ?"
            ),
            (now_ms, max as u64),
        );
    }
    let goods: Vec<GoodsId> = conn.exec(
        "SELECT id FROM goods WHERE unpaid_until_ms >= ? ORDER BY id",
        (sweep.floor,),
    )?;
    // Each group's rows in goods order (the range scan's own, kept by the
    // ORDER BY even where multi-range reads would sort by row), so that
    // the goods a sweep stops in is the last one it read.
    let (before, from) = goods.split_at(goods.partition_point(|&g| g < sweep.from));
    let mut due = Vec::new();
    for group in from
        .chunks(GOODS_PER_READ)
        .chain(before.chunks(GOODS_PER_READ))
    {
        let left = max.saturating_sub(due.len());
        if left == 0 {
            break;
        }
        // Text, of integers formatted here: a statement prepared for each
        // list would be prepared once and pushed out of the connection's
        // cache of statements the order writer uses.
        let rows: Vec<OrderRow> = conn.query(format!(
            "SELECT {ORDER_COLUMNS} FROM orders FORCE INDEX (orders_by_goods)
             WHERE goods_id IN ({}) AND state = 0 AND pay_by_ms <= {now_ms}
             ORDER BY goods_id LIMIT {left}",
            id_list(group)
        ))?;
        due.extend(rows);
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sweep_reads_every_goods_and_a_complete_one_raises_the_floor() {
        let mut plan = SweepPlan::new();
        let first = plan.next();
        assert_eq!(first, Sweep { floor: 0, from: 0 });
        plan.swept(first, 1_000_000, None);
        assert_eq!(plan.next().floor, 1_000_000 - 60_000);
        plan.swept(plan.next(), 1_001_000, None);
        assert_eq!(plan.next().floor, 1_001_000 - 60_000);
        // Full again once its time has come.
        plan.full_next();
        assert_eq!(plan.next().floor, 0);
    }

    #[test]
    fn a_sweep_that_stops_at_its_maximum_keeps_the_floor_and_the_next_begins_after() {
        let mut plan = SweepPlan::new();
        plan.swept(plan.next(), 1_000_000, None);
        plan.swept(plan.next(), 2_000_000, Some(7));
        assert_eq!(
            plan.next(),
            Sweep {
                floor: 1_000_000 - 60_000,
                from: 8
            }
        );
        plan.swept(plan.next(), 2_001_000, None);
        assert_eq!(plan.next().from, 0);
        // After the last goods there can be, the first.
        plan.swept(plan.next(), 2_002_000, Some(GoodsId::MAX));
        assert_eq!(plan.next().from, 0);
    }
}
