//! Which primary serves each goods on a Redis Cluster, so that a failover
//! is noticed: replication is asynchronous, so a replica promoted when its
//! primary died may lack the primary's last deductions, and the goods of its
//! slots must be reloaded from the order store before those units are sold
//! twice.

use std::collections::HashMap;

use ::redis::Value;

use super::link::inconsistent;
use super::RedisStock;
use crate::store::{GoodsId, StoreError};

/// What this store last saw of the cluster, per part of a goods (all of it,
/// or its pool and each bucket), by the part's stock key.
#[derive(Default)]
pub(super) struct Watch {
    /// Each part's slot: fixed by its key's hash tag, asked of Redis once.
    slots: HashMap<String, u16>,
    /// The node id of the primary that last served each part's slot.
    primaries: HashMap<String, String>,
}

/// A slot range and the node id of its primary, from CLUSTER SLOTS.
struct Range {
    first: u16,
    last: u16,
    primary: String,
}

impl RedisStock {
    /// The goods among `goods` whose slot is served by another primary than
    /// when this was last asked (a failover, or a slot moved by hand): each
    /// may have lost writes. Goods seen for the first time are only
    /// recorded, and so is a goods whose slot no node serves right now (it
    /// is noticed once one does). Always empty on one Redis.
    pub(in crate::store) fn primaries_changed(
        &self,
        goods: &[GoodsId],
    ) -> Result<Vec<GoodsId>, StoreError> {
        if !self.is_cluster() || goods.is_empty() {
            return Ok(Vec::new());
        }
        let ranges = self.cluster_slots()?;
        let mut watch = self.watch.lock();
        let mut changed = Vec::new();
        for &g in goods {
            let mut moved = false;
            for (_, keys) in self.parts_of(g) {
                moved |= self.primary_changed(&mut watch, &ranges, keys.stock)?;
            }
            if moved {
                changed.push(g);
            }
        }
        Ok(changed)
    }

    /// Whether the primary serving `key`'s slot changed since last asked.
    fn primary_changed(
        &self,
        watch: &mut Watch,
        ranges: &[Range],
        key: String,
    ) -> Result<bool, StoreError> {
        let slot = match watch.slots.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot: u16 = self.call("keyslot", |con| {
                    ::redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query(con)
                })?;
                watch.slots.insert(key.clone(), slot);
                slot
            }
        };
        let Some(range) = ranges.iter().find(|r| r.first <= slot && slot <= r.last) else {
            return Ok(false);
        };
        Ok(matches!(
            watch.primaries.insert(key, range.primary.clone()),
            Some(before) if before != range.primary
        ))
    }

    fn cluster_slots(&self) -> Result<Vec<Range>, StoreError> {
        let reply: Value = self.call("cluster slots", |con| {
            ::redis::cmd("CLUSTER").arg("SLOTS").query(con)
        })?;
        let bad = || inconsistent(format!("CLUSTER SLOTS answered {reply:?}"));
        let Value::Array(ranges) = &reply else {
            return Err(bad());
        };
        ranges
            .iter()
            .map(|range| {
                // [first, last, [ip, port, id, ...] of the primary, replicas...]
                let Value::Array(items) = range else {
                    return Err(bad());
                };
                match items.as_slice() {
                    [Value::Int(first), Value::Int(last), Value::Array(primary), ..] => {
                        let id = match primary.get(2) {
                            Some(Value::BulkString(id)) => String::from_utf8_lossy(id).into_owned(),
                            _ => return Err(bad()),
                        };
                        Ok(Range {
                            first: u16::try_from(*first).map_err(|_| bad())?,
                            last: u16::try_from(*last).map_err(|_| bad())?,
                            primary: id,
                        })
                    }
                    _ => Err(bad()),
                }
            })
            .collect()
    }
}
