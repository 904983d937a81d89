//! Reading a bucketed goods part by part: what is left where, what is on
//! its way between parts (the ledgers), and completing moves cut short.

use std::collections::HashMap;

use seckill_redis_scripts::{EpochState, Part};

use super::super::link::{inconsistent, parse_u64, to_u32};
use super::super::RedisStock;
use crate::store::{Epoch, GoodsId, Holders, Levels, StockParts, StoreError};

/// One part as read in one atomic step.
struct PartState {
    part: Part,
    /// Its epoch key as it stands: `None` while a load freezes it (and its
    /// ledger may still be the epoch before's).
    epoch: Option<Epoch>,
    stock: u32,
    released: u64,
    /// The ledger: `sent:<dest>` and `got:<src>` counters.
    ledger: HashMap<String, u64>,
}

impl RedisStock {
    /// Every part as just read; `empty` if nothing was on its way either.
    fn saw_all(&self, goods: GoodsId, states: &[PartState], empty: bool) {
        for s in states {
            self.saw(goods, s.part, s.stock);
        }
        if empty {
            if let Some(seen) = self.levels.lock().get_mut(&goods) {
                seen.empty = seen.parts.iter().all(|&n| n == 0);
            }
        }
    }

    /// Every part of a goods, each read in one atomic step, the pool first;
    /// `None` if a part is missing (not loaded, or lost).
    fn read_parts(&self, goods: GoodsId) -> Result<Option<Vec<PartState>>, StoreError> {
        let mut states = Vec::new();
        for (part, keys) in self.parts_of(goods) {
            let mut pipe = ::redis::pipe();
            pipe.atomic()
                .cmd("GET")
                .arg(&keys.stock)
                .cmd("GET")
                .arg(&keys.released)
                .cmd("HGETALL")
                .arg(&keys.ledger)
                .cmd("GET")
                .arg(&keys.epoch);
            type Read = (
                Option<i64>,
                Option<u64>,
                HashMap<String, String>,
                Option<String>,
            );
            let (stock, released, ledger, epoch) =
                self.call("read parts", |con| pipe.query::<Read>(con))?;
            let Some(stock) = stock else {
                return Ok(None);
            };
            let epoch = epoch
                .map(|e| {
                    EpochState::parse(&e)
                        .ok_or_else(|| inconsistent(format!("bad {}: {e:?}", keys.epoch)))
                })
                .transpose()?;
            let ledger = ledger
                .into_iter()
                .map(|(field, n)| Ok((field, parse_u64(&keys.ledger, &n)?)))
                .collect::<Result<_, StoreError>>()?;
            states.push(PartState {
                part,
                epoch: epoch.filter(|e| !e.loading).map(|e| e.epoch),
                stock: to_u32(&keys.stock, stock)?,
                released: released.unwrap_or(0),
                ledger,
            });
        }
        Ok(Some(states))
    }

    /// Completes every move cut short (units sent and not received), and
    /// says whether the goods has no unit left anywhere: every part empty,
    /// nothing on its way. Errs on the side of "units left".
    pub(in crate::store::redis) fn settle(&self, goods: GoodsId) -> Result<bool, StoreError> {
        let Some(states) = self.read_parts(goods)? else {
            return Err(StoreError::NotLoaded(goods));
        };
        if !same_epoch(&states) {
            // Being reloaded: its count will say.
            return Ok(false);
        }
        let mut nothing_moving = true;
        for m in moves(&states) {
            if m.in_flight > 0 {
                nothing_moving = false;
                // Completed as a move of no more units, not by a RECEIVE of
                // the total read above: the SEND reads it again, on the
                // source, and with `--redis-wait` waits for the source's
                // replicas to have it, so that no unit a failover could
                // give back to the source is added to the destination.
                self.move_units(goods, m.from, m.to, 0)?;
            }
        }
        let empty = nothing_moving && states.iter().all(|s| s.stock == 0);
        self.saw_all(goods, &states, empty);
        Ok(empty)
    }

    /// Units left in every part, those on their way included, and units
    /// ever released: one atomic read per part.
    pub(in crate::store::redis) fn levels_split(
        &self,
        goods: GoodsId,
    ) -> Result<Option<Levels>, StoreError> {
        let Some(states) = self.read_parts(goods)? else {
            return Ok(None);
        };
        let parts = summary(&states, 0);
        self.saw_all(
            goods,
            &states,
            parts.accounted() == 0 && parts.in_flight == 0,
        );
        let left = parts.accounted().max(0);
        Ok(Some(Levels {
            remaining: u32::try_from(left).unwrap_or(u32::MAX),
            released: states.iter().map(|s| s.released).sum(),
        }))
    }

    /// A reconciliation's look at a goods of several buckets, frozen for it:
    /// the units of every part and every move, and every bucket's holders.
    pub(in crate::store::redis) fn snapshot_split(
        &self,
        goods: GoodsId,
    ) -> Result<Option<(u32, Holders)>, StoreError> {
        let Some(states) = self.read_parts(goods)? else {
            return Ok(None);
        };
        let Some(holders) = self.holders_split(goods)? else {
            return Ok(None);
        };
        let left = summary(&states, 0).accounted().max(0);
        Ok(Some((u32::try_from(left).unwrap_or(u32::MAX), holders)))
    }

    /// Every bucket's holders, sorted; `None` if a bucket is missing.
    fn holders_split(&self, goods: GoodsId) -> Result<Option<Holders>, StoreError> {
        let mut holders = Holders::new();
        for (part, keys) in self.parts_of(goods) {
            if part == Part::Pool {
                continue;
            }
            match self.snapshot_part(goods, &keys)? {
                Some((_, mine)) => holders.extend(mine),
                None => return Ok(None),
            }
        }
        holders.sort_unstable();
        Ok(Some(holders))
    }

    /// [`StockStore::parts`](crate::store::StockStore::parts): every part
    /// read in turn, holders counted.
    pub(in crate::store::redis) fn stock_parts(
        &self,
        goods: GoodsId,
    ) -> Result<Option<StockParts>, StoreError> {
        if self.buckets_of(goods) == 1 {
            return Ok(self
                .snapshot_part(goods, &self.keys(goods))?
                .map(|(left, holders)| StockParts::whole(left, &holders)));
        }
        // Holders first, then the counters: a BUY or a release in between
        // is seen on one side only, so while the sale goes on the sum may be
        // off by the BUYs and releases of that moment (the parts' counters
        // alone are exact, see `moves`).
        let Some(holders) = self.holders_split(goods)? else {
            return Ok(None);
        };
        let Some(states) = self.read_parts(goods)? else {
            return Ok(None);
        };
        Ok(Some(summary(&states, holders.len() as u64)))
    }
}

/// The parts' counters summed up.
fn summary(states: &[PartState], holders: u64) -> StockParts {
    StockParts {
        pool: states
            .iter()
            .find(|s| s.part == Part::Pool)
            .map_or(0, |s| s.stock),
        in_flight: moves(states).iter().map(|m| m.in_flight).sum(),
        buckets: states
            .iter()
            .filter(|s| s.part != Part::Pool)
            .map(|s| s.stock)
            .collect(),
        holders,
    }
}

/// Whether every part is loaded under one epoch: the ledgers are then all
/// of that epoch, and comparable. While a load goes on (some parts frozen,
/// or loaded before others), a ledger may still be the epoch before's.
fn same_epoch(states: &[PartState]) -> bool {
    let first = states.first().and_then(|s| s.epoch);
    first.is_some() && states.iter().all(|s| s.epoch == first)
}

/// Units sent from one part to another under one epoch.
struct Move {
    from: Part,
    to: Part,
    /// Sent minus got. Read one part at a time, a move between the two reads
    /// shows as negative here and as units in both parts, which sums up
    /// exactly.
    in_flight: i64,
}

/// Every pair of parts with units sent, among parts at one epoch: a ledger
/// is only ever compared with another of the same epoch (a load clears
/// each part's as it goes, so a pair across a load would count the epoch
/// before's moves again).
fn moves(states: &[PartState]) -> Vec<Move> {
    let mut out = Vec::new();
    for from in states {
        for to in states.iter().filter(|s| s.part != from.part) {
            if from.epoch.is_none() || from.epoch != to.epoch {
                continue;
            }
            let sent = from
                .ledger
                .get(&Part::sent_field(to.part))
                .copied()
                .unwrap_or(0);
            let got = to
                .ledger
                .get(&Part::got_field(from.part))
                .copied()
                .unwrap_or(0);
            if sent > 0 || got > 0 {
                let sent = i64::try_from(sent).unwrap_or(i64::MAX);
                let got = i64::try_from(got).unwrap_or(i64::MAX);
                out.push(Move {
                    from: from.part,
                    to: to.part,
                    in_flight: sent - got,
                });
            }
        }
    }
    out
}
