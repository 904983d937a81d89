//! The expiry sweep's read: created orders whose payment window has closed.
//!
//! A table made by this version has no index of all orders by due time:
//! `orders_by_goods (goods_id, state, pay_by_ms)` serves the reads by goods
//! and, in full, the sweep, one range per goods, and a second index cost
//! MariaDB 1.7 to 4 µs of CPU per inserted order (BENCHMARKS.md, "one index
//! of a goods' orders, with the goods to sweep"). A range per goods costs a
//! statement per goods, though, and the catalogue only grows: so the sweep
//! reads only the goods that may have unpaid orders, by
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
//! A table made before keeps `orders_due (state, pay_by_ms)`, read in one
//! range ([`DueIndex::Due`]).

use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use ::mysql::PooledConn;

use super::rows::{OrderRow, ORDER_COLUMNS};
use super::schema::DueIndex;
use crate::store::GoodsId;

/// How far behind the last complete sweep a goods' mark may be and the goods
/// still read.
pub(super) const MARGIN: Duration = Duration::from_secs(60);

/// How often every goods is read, whatever its mark.
pub(super) const FULL_EVERY: Duration = Duration::from_secs(600);

/// Which goods the next sweep reads: those whose mark is at least
/// [`floor`](Self::floor). Each server's own (its sweeps run one at a time,
/// on its expiry thread).
#[derive(Debug)]
pub(super) struct SweepFloor {
    /// Unix ms: the time of the last complete sweep, less [`MARGIN`].
    floor_ms: u64,
    /// When the next sweep reads every goods (the first does).
    next_full: Instant,
}

impl SweepFloor {
    pub(super) fn new() -> SweepFloor {
        SweepFloor {
            floor_ms: 0,
            next_full: Instant::now(),
        }
    }

    /// The floor for the sweep about to run: 0 (every goods) when a full
    /// sweep is due.
    pub(super) fn floor(&self) -> u64 {
        match Instant::now() >= self.next_full {
            true => 0,
            false => self.floor_ms,
        }
    }

    /// The next sweep reads every goods.
    #[cfg(test)]
    pub(super) fn full_next(&mut self) {
        self.next_full = Instant::now();
    }

    /// A sweep from `floor` at `now_ms` read every due order of the goods it
    /// read (it stopped short of its maximum).
    pub(super) fn swept(&mut self, floor: u64, now_ms: u64) {
        self.floor_ms = now_ms.saturating_sub(MARGIN.as_millis() as u64);
        if floor == 0 {
            self.next_full = Instant::now() + FULL_EVERY;
        }
    }
}

/// Up to `max` created orders whose payment window closed by `now_ms`, by a
/// plain read through `index`: of the goods whose mark is at least `floor`,
/// one range each, goods by goods until `max` are found; or, through
/// `orders_due`, one range. Oldest first within a range, in the index's
/// order (an ORDER BY of a column outside it would sort every due order
/// before the LIMIT).
pub(super) fn due_orders(
    conn: &mut PooledConn,
    index: DueIndex,
    floor: u64,
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
        (floor,),
    )?;
    let mut due = Vec::new();
    for goods in goods {
        let left = max.saturating_sub(due.len());
        if left == 0 {
            break;
        }
        let rows: Vec<OrderRow> = conn.exec(
            format!(
                "SELECT {ORDER_COLUMNS} FROM orders FORCE INDEX (orders_by_goods)
                 WHERE goods_id = ? AND state = 0 AND pay_by_ms <= ?
                 ORDER BY pay_by_ms LIMIT ?"
            ),
            (goods, now_ms, left as u64),
        )?;
        due.extend(rows);
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sweep_reads_every_goods_and_a_complete_one_raises_the_floor() {
        let mut sweep = SweepFloor::new();
        assert_eq!(sweep.floor(), 0);
        sweep.swept(0, 1_000_000);
        assert_eq!(sweep.floor(), 1_000_000 - 60_000);
        sweep.swept(940_000, 1_001_000);
        assert_eq!(sweep.floor(), 1_001_000 - 60_000);
        // Full again once its time has come.
        sweep.full_next();
        assert_eq!(sweep.floor(), 0);
    }
}
