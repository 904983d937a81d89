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
    /// The primary's host and port.
    address: (String, u16),
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

    /// The host and port of each primary of the cluster, once each.
    pub(super) fn primaries(&self) -> Result<Vec<(String, u16)>, StoreError> {
        Ok(addresses(self.cluster_slots()?))
    }

    fn cluster_slots(&self) -> Result<Vec<Range>, StoreError> {
        let reply: Value = self.call("cluster slots", |con| {
            ::redis::cmd("CLUSTER").arg("SLOTS").query(con)
        })?;
        ranges(&reply)
    }
}

/// The primaries' addresses of `ranges`, once each.
fn addresses(ranges: Vec<Range>) -> Vec<(String, u16)> {
    let mut addresses: Vec<(String, u16)> = ranges.into_iter().map(|r| r.address).collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// CLUSTER SLOTS' answer as ranges.
fn ranges(reply: &Value) -> Result<Vec<Range>, StoreError> {
    let bad = || inconsistent(format!("CLUSTER SLOTS answered {reply:?}"));
    let Value::Array(ranges) = reply else {
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
                    let [Value::BulkString(host), Value::Int(port), Value::BulkString(id), ..] =
                        primary.as_slice()
                    else {
                        return Err(bad());
                    };
                    Ok(Range {
                        first: u16::try_from(*first).map_err(|_| bad())?,
                        last: u16::try_from(*last).map_err(|_| bad())?,
                        primary: String::from_utf8_lossy(id).into_owned(),
                        address: (
                            String::from_utf8_lossy(host).into_owned(),
                            u16::try_from(*port).map_err(|_| bad())?,
                        ),
                    })
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_by(primary: &str) -> Vec<Range> {
        vec![Range {
            first: 0,
            last: 16383,
            primary: primary.into(),
            address: ("127.0.0.1".into(), 7000),
        }]
    }

    /// The primaries' addresses, once each, from CLUSTER SLOTS' ranges
    /// (several ranges may share a primary).
    #[test]
    fn each_primary_is_asked_once() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let node = |host: &str, port: i64, id: &str| {
            Value::Array(vec![bulk(host), Value::Int(port), bulk(id)])
        };
        let range = |first, last, primary, replica| {
            Value::Array(vec![Value::Int(first), Value::Int(last), primary, replica])
        };
        let slots = Value::Array(vec![
            range(
                0,
                99,
                node("10.0.0.2", 7001, "b"),
                node("10.0.0.5", 7004, "e"),
            ),
            range(
                100,
                199,
                node("10.0.0.1", 7000, "a"),
                node("10.0.0.4", 7003, "d"),
            ),
            range(
                200,
                299,
                node("10.0.0.2", 7001, "b"),
                node("10.0.0.5", 7004, "e"),
            ),
        ]);
        assert_eq!(
            addresses(ranges(&slots).unwrap()),
            [
                ("10.0.0.1".to_string(), 7000),
                ("10.0.0.2".to_string(), 7001)
            ]
        );
        assert!(ranges(&Value::Nil).is_err());
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
