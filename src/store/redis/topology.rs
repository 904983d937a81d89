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

impl Watch {
    /// Records which primary serves each of `parts` (a goods and one of its
    /// parts' stock key) and returns the goods one of whose parts moved.
    /// The parts' slots are all found first (`slot_of` asks Redis for a
    /// key's): a lookup that fails then fails the whole pass before any
    /// primary is recorded, so a change seen for one goods is not recorded
    /// and forgotten because another goods' lookup failed after it.
    fn changes(
        &mut self,
        ranges: &[Range],
        parts: &[(GoodsId, String)],
        mut slot_of: impl FnMut(&str) -> Result<u16, StoreError>,
    ) -> Result<Vec<GoodsId>, StoreError> {
        for (_, key) in parts {
            if !self.slots.contains_key(key) {
                let slot = slot_of(key)?;
                self.slots.insert(key.clone(), slot);
            }
        }
        let mut changed = Vec::new();
        for (g, key) in parts {
            let slot = self.slots[key];
            // A slot no node serves right now is noticed once one does.
            let Some(range) = ranges.iter().find(|r| r.first <= slot && slot <= r.last) else {
                continue;
            };
            let moved = matches!(
                self.primaries.insert(key.clone(), range.primary.clone()),
                Some(before) if before != range.primary
            );
            if moved && changed.last() != Some(g) {
                changed.push(*g);
            }
        }
        Ok(changed)
    }
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
        let parts: Vec<(GoodsId, String)> = goods
            .iter()
            .flat_map(|&g| self.parts_of(g).into_iter().map(move |(_, k)| (g, k.stock)))
            .collect();
        let mut watch = self.watch.lock();
        watch.changes(&ranges, &parts, |key| {
            self.call("keyslot", |con| {
                ::redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(con)
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn served_by(primary: &str) -> Vec<Range> {
        vec![Range {
            first: 0,
            last: 16383,
            primary: primary.into(),
        }]
    }

    /// A failover seen for one goods in a pass whose slot lookup then
    /// fails for another goods is not lost: the pass fails as a whole, and
    /// the next one still reports it.
    #[test]
    fn a_change_is_not_forgotten_when_a_later_lookup_fails() {
        let mut watch = Watch::default();
        let a = (1, "{g1}:stock".to_string());
        let b = (2, "{g2}:stock".to_string());
        let slots = |key: &str| Ok(if key.contains("g1") { 10 } else { 20 });
        let first = watch.changes(&served_by("x"), std::slice::from_ref(&a), slots);
        assert_eq!(first.unwrap(), Vec::<GoodsId>::new());
        let failing = |key: &str| match key.contains("g2") {
            true => Err(StoreError::Unavailable("failing over".into())),
            false => Ok(10),
        };
        let parts = [a.clone(), b.clone()];
        assert!(watch.changes(&served_by("y"), &parts, failing).is_err());
        let next = watch.changes(&served_by("y"), &parts, slots);
        assert_eq!(next.unwrap(), [1]);
        let after = watch.changes(&served_by("y"), &parts, slots);
        assert_eq!(after.unwrap(), Vec::<GoodsId>::new());
    }
}
