//! [`OrderQueue`] on Redis: one stream a goods, which the reserve script
//! appends to in queued mode, read by the consumer group of the order
//! writers.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use ::redis::{Cmd, ConnectionLike, RedisResult};
use log::{error, warn};
use seckill_proto::{OrderState, DEFAULT_PAY_WINDOW_MS};

use super::link::Link;
use super::link::{inconsistent, parse_u64, IO_TIMEOUT};
use super::RedisStock;
use crate::store::{Backlog, GoodsId, OrderQueue, OrderRecord, QueuedOrder, StoreError};
use seckill_redis_scripts::Part;

/// Entries per XRANGE page when listing a queue.
const RANGE_PAGE: usize = 1000;
/// How long an empty read of the queues waits before it answers on a
/// cluster, where the reads cannot block (see [`OrderQueue::read`]): the
/// most a queued order waits for the writer to notice it.
const CLUSTER_POLL: Duration = Duration::from_millis(20);
/// A queue's goods, and its bucket if the goods has buckets.
type Place = (GoodsId, Option<u16>);

/// The consumer group of the order writers on every queue.
const GROUP: &str = "writers";

/// The queue id of an entry of a goods' queue in `bucket` (none: the
/// goods' one queue): its stream id, after "b<bucket>/" when the goods has
/// buckets, each with a queue of its own, so that [`OrderQueue::ack`] can
/// tell which.
fn queue_id(bucket: Option<u16>, stream_id: &str) -> String {
    match bucket {
        None => stream_id.to_string(),
        Some(b) => format!("b{b}/{stream_id}"),
    }
}

/// The bucket and stream id a [`queue_id`] names.
fn split_queue_id(id: &str) -> (Option<u16>, &str) {
    id.strip_prefix('b')
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(b, stream_id)| Some((Some(b.parse().ok()?), stream_id)))
        .unwrap_or((None, id))
}

/// The order in a queue entry written by the reserve script.
fn queued_order(
    goods: GoodsId,
    bucket: Option<u16>,
    entry: &StreamId,
) -> Result<QueuedOrder, StoreError> {
    let field = |name: &str| {
        let text = entry.get::<String>(name).unwrap_or_default();
        let what = format!("field {name} of queue entry {} of goods {goods}", entry.id);
        parse_u64(&what, &text)
    };
    let created_ms = field("created_ms")?;
    // An entry queued by a server from before payment windows has none:
    // it gets the default window.
    let pay_by_ms = if entry.contains_key("pay_by_ms") {
        field("pay_by_ms")?
    } else {
        created_ms.saturating_add(DEFAULT_PAY_WINDOW_MS)
    };
    let order = OrderRecord {
        order_no: field("order_no")?,
        user_id: field("user")?,
        goods_id: field("goods")?,
        state: OrderState::Created,
        created_ms,
        pay_by_ms,
    };
    if order.goods_id != goods {
        return Err(inconsistent(format!(
            "queue entry {} of goods {goods} is for goods {}",
            entry.id, order.goods_id
        )));
    }
    Ok(QueuedOrder {
        id: queue_id(bucket, &entry.id),
        order,
    })
}

/// The orders in entries read for writing. An entry that is no order (which
/// only a bug or a hand edit can make) is logged and skipped rather than
/// failing the batch: it would fail every read that meets it again, and
/// stop the orders behind it. It stays pending, for an operator to look at.
fn readable(goods: GoodsId, bucket: Option<u16>, entries: &[StreamId]) -> Vec<QueuedOrder> {
    entries
        .iter()
        .filter_map(|e| {
            queued_order(goods, bucket, e)
                .map_err(|err| error!("skipping a queued order: {err}"))
                .ok()
        })
        .collect()
}

/// XREADGROUP of the writers' group as `consumer`, up to `count` entries
/// (without the STREAMS part).
fn read_group(consumer: &str, count: usize) -> Cmd {
    let mut cmd = ::redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    cmd
}

/// Runs `read`, and once more after creating the group on every queue if
/// a queue had none (Redis lost it, or the goods is new).
fn with_groups<T>(
    con: &mut Link,
    queues: &HashMap<String, Place>,
    read: impl Fn(&mut Link) -> RedisResult<T>,
) -> RedisResult<T> {
    match read(con) {
        Err(e) if e.code() == Some("NOGROUP") => {
            for queue in queues.keys() {
                create_group(con, queue)?;
            }
            read(con)
        }
        other => other,
    }
}

/// Every queue in one XREADGROUP, blocking up to `block` (one Redis).
fn read_all(
    con: &mut Link,
    queues: &HashMap<String, Place>,
    consumer: &str,
    count: usize,
    block: Duration,
) -> RedisResult<Option<StreamReadReply>> {
    let mut cmd = read_group(consumer, count);
    // BLOCK 0 would wait forever.
    let block_ms = block.as_millis().max(u128::from(!block.is_zero()));
    if block_ms > 0 {
        cmd.arg("BLOCK")
            .arg(u64::try_from(block_ms).unwrap_or(u64::MAX));
    }
    cmd.arg("STREAMS");
    for queue in queues.keys() {
        cmd.arg(queue);
    }
    for _ in 0..queues.len() {
        cmd.arg(">");
    }
    with_groups(con, queues, |con| cmd.query(con))
}

/// One XREADGROUP a queue, none blocking, sent as one pipeline a cluster
/// node (a cluster).
fn read_each(
    con: &mut Link,
    queues: &HashMap<String, Place>,
    consumer: &str,
    count: usize,
) -> RedisResult<Vec<StreamReadReply>> {
    let mut pipe = ::redis::cluster::cluster_pipe();
    for queue in queues.keys() {
        let mut cmd = read_group(consumer, count);
        cmd.arg("STREAMS").arg(queue).arg(">");
        pipe.add_command(cmd);
    }
    let replies: Vec<Option<StreamReadReply>> = with_groups(con, queues, |con| match con {
        Link::Cluster(con) => pipe.query(con),
        // (Read so only on a cluster, but one Redis would take the same
        // commands as a plain pipeline.)
        Link::One(con) => {
            let mut one = ::redis::pipe();
            for cmd in pipe.cmd_iter() {
                one.add_command(cmd.clone());
            }
            one.query(con)
        }
    })?;
    Ok(replies.into_iter().flatten().collect())
}

/// XGROUP CREATE from the start of the stream (so entries added before the
/// group existed are read too), creating the stream; an existing group is
/// left as it is, pending entries and all.
pub(super) fn create_group(con: &mut dyn ConnectionLike, queue: &str) -> RedisResult<()> {
    let created = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(queue)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(con);
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

impl RedisStock {
    /// With `--redis-wait`: after entries were read from `queues` (their
    /// keys), waits on the same link for the replicas to have every write
    /// it sent, the read itself included, and so every entry it read: an
    /// entry is written to the order store only once a failover can no
    /// longer lose it. Otherwise a BUY whose queueing never reached a
    /// replica (its buyer told the outcome is unknown) could be written to
    /// the order store, live, while the promoted replica sells its unit
    /// again, and the order store does not refuse queued orders past the
    /// total. The fewest replicas any queue's node reached (`None`: nothing
    /// to wait for).
    fn wait_replicas<'k>(
        &self,
        con: &mut Link,
        queues: impl IntoIterator<Item = &'k str>,
    ) -> RedisResult<Option<i64>> {
        let Some(r) = &self.replication else {
            return Ok(None);
        };
        let mut fewest = None;
        // One WAIT per queue: on a cluster each may be on another node (and
        // a second WAIT on one node returns at once).
        for queue in queues {
            let got = con.wait_replicas(queue, r)?;
            fewest = Some(fewest.map_or(got, |f: i64| f.min(got)));
        }
        Ok(fewest)
    }

    /// A read's entries, unless the replicas did not all get them: then
    /// none is written now. They stay pending, and are claimed again (and
    /// waited for again) once idle.
    fn replicated<T>(
        &self,
        goods: &[GoodsId],
        read: Result<(Option<i64>, T), StoreError>,
    ) -> Result<T, StoreError> {
        let (got, entries) = read?;
        match (&self.replication, got) {
            (Some(r), Some(got)) if got < i64::from(r.replicas) => {
                // Once a read while the replicas lag (the drain waits a
                // second between reads that fail).
                let e = StoreError::Unavailable(format!(
                    "queued orders of goods {goods:?} read, but on {got} of {} replicas within \
                     {:?}: not written until they are on all",
                    r.replicas, r.timeout
                ));
                warn!("{e}");
                Err(e)
            }
            _ => Ok(entries),
        }
    }

    /// A goods' queues: its one queue, or one per bucket.
    fn queues(&self, goods: GoodsId) -> Vec<(Option<u16>, String)> {
        match self.buckets_of(goods) {
            1 => vec![(None, self.keys(goods).queue)],
            k => (0..k)
                .map(|b| (Some(b), self.part_keys(goods, Part::Bucket(b)).queue))
                .collect(),
        }
    }
}

impl OrderQueue for RedisStock {
    /// Reads up to `count` new orders from the queues of `goods` as
    /// `consumer` of the writers' group, waiting up to `block` for one (zero:
    /// no wait). A queue without the group (Redis lost it) gets the group.
    /// The orders stay pending for this consumer until [`OrderQueue::ack`]ed.
    ///
    /// On one Redis all the queues are read in one blocking command. On a
    /// cluster each goods' queue is in its own slot (one command may not
    /// span slots), so each is read without blocking, one round trip a
    /// node, and an empty read waits a short poll before it answers.
    fn read(
        &self,
        goods: &[GoodsId],
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<QueuedOrder>, StoreError> {
        if goods.is_empty() || count == 0 {
            return Ok(Vec::new());
        }
        let queues: HashMap<String, Place> = goods
            .iter()
            .flat_map(|&g| {
                self.queues(g)
                    .into_iter()
                    .map(move |(bucket, queue)| (queue, (g, bucket)))
            })
            .collect();
        let reply = if self.is_cluster() {
            let reply = self.call("read queues", |con| {
                let reply = read_each(con, &queues, consumer, count)?;
                let keys = reply.iter().flat_map(|r| &r.keys).map(|s| s.key.as_str());
                Ok((self.wait_replicas(con, keys)?, reply))
            });
            let reply = self.replicated(goods, reply)?;
            if reply.iter().all(|r| r.keys.is_empty()) {
                std::thread::sleep(block.min(CLUSTER_POLL));
            }
            reply
        } else {
            let reply = self.call("read queue", |con| {
                // The reply may take `block`: wait that long, then back to
                // the usual timeout before the connection returns to the
                // pool.
                con.set_read_timeout(Some(block.saturating_add(IO_TIMEOUT)))?;
                let reply = read_all(con, &queues, consumer, count, block);
                con.set_read_timeout(Some(IO_TIMEOUT))?;
                let reply = reply?;
                let keys = reply.iter().flat_map(|r| &r.keys).map(|s| s.key.as_str());
                Ok((self.wait_replicas(con, keys)?, reply))
            });
            self.replicated(goods, reply)?.into_iter().collect()
        };
        let mut orders = Vec::new();
        for stream in reply.into_iter().flat_map(|r| r.keys) {
            let Some(&(goods, bucket)) = queues.get(&stream.key) else {
                return Err(inconsistent(format!(
                    "read an unasked stream {}",
                    stream.key
                )));
            };
            orders.extend(readable(goods, bucket, &stream.ids));
        }
        Ok(orders)
    }

    /// Takes over, for `consumer`, up to `count` orders of a goods that
    /// another consumer read and has not acked for `min_idle` (a writer that
    /// crashed or hung), and returns them.
    fn claim_stale(
        &self,
        goods: GoodsId,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<QueuedOrder>, StoreError> {
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut orders = Vec::new();
        for (bucket, queue) in self.queues(goods) {
            let claimed = self.call("claim stale", |con| {
                let mut claimed = Vec::new();
                let mut start = "0-0".to_string();
                while claimed.len() < count {
                    let reply = ::redis::cmd("XAUTOCLAIM")
                        .arg(&queue)
                        .arg(GROUP)
                        .arg(consumer)
                        .arg(min_idle_ms)
                        .arg(&start)
                        .arg("COUNT")
                        .arg(count - claimed.len())
                        .query::<StreamAutoClaimReply>(con);
                    let reply = match reply {
                        // No group, so nothing pending.
                        Err(e) if e.code() == Some("NOGROUP") => break,
                        other => other?,
                    };
                    claimed.extend(reply.claimed);
                    if reply.next_stream_id == "0-0" {
                        break;
                    }
                    start = reply.next_stream_id;
                }
                let read = (!claimed.is_empty()).then_some(queue.as_str());
                Ok((self.wait_replicas(con, read)?, claimed))
            });
            let claimed = self.replicated(&[goods], claimed)?;
            orders.extend(readable(goods, bucket, &claimed));
        }
        Ok(orders)
    }

    /// Marks orders of a goods as written and removes them from its queue,
    /// in one round trip.
    fn ack(&self, goods: GoodsId, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut by_queue: HashMap<Option<u16>, Vec<&str>> = HashMap::new();
        for id in ids {
            let (bucket, stream_id) = split_queue_id(id);
            by_queue.entry(bucket).or_default().push(stream_id);
        }
        for (bucket, ids) in by_queue {
            let queue = self
                .part_keys(goods, Part::Bucket(bucket.unwrap_or(0)))
                .queue;
            let mut pipe = ::redis::pipe();
            pipe.atomic()
                .cmd("XACK")
                .arg(&queue)
                .arg(GROUP)
                .arg(&ids)
                .ignore()
                .cmd("XDEL")
                .arg(&queue)
                .arg(&ids)
                .ignore();
            self.call("ack", |con| pipe.query::<()>(con))?;
        }
        Ok(())
    }

    /// Every order still in a goods' queue, read or not, oldest first. An
    /// entry that is no order is logged and left out, as the drain leaves
    /// it (see [`readable`]): it will never be written, and failing here
    /// would fail every reconciliation of the goods, each after freezing it
    /// on every server.
    fn queued(&self, goods: GoodsId) -> Result<Vec<OrderRecord>, StoreError> {
        let mut orders = Vec::new();
        for (bucket, queue) in self.queues(goods) {
            let entries = self.call("list queue", |con| {
                let mut entries: Vec<StreamId> = Vec::new();
                loop {
                    let start = entries
                        .last()
                        .map_or_else(|| "-".to_string(), |e| format!("({}", e.id));
                    let page = ::redis::cmd("XRANGE")
                        .arg(&queue)
                        .arg(start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(RANGE_PAGE)
                        .query::<StreamRangeReply>(con)?;
                    let full = page.ids.len() == RANGE_PAGE;
                    entries.extend(page.ids);
                    if !full {
                        return Ok(entries);
                    }
                }
            })?;
            orders.extend(
                readable(goods, bucket, &entries)
                    .into_iter()
                    .map(|q| q.order),
            );
        }
        Ok(orders)
    }

    /// Written entries are deleted from the queue (see [`OrderQueue::ack`]),
    /// so its length is what is left to write, and the first entry's id
    /// says when the oldest was queued: one round trip a queue.
    fn backlog(&self, goods: GoodsId) -> Result<Backlog, StoreError> {
        let mut backlog = Backlog::default();
        for (_, queue) in self.queues(goods) {
            let (len, first): (u64, StreamRangeReply) = self.call("queue backlog", |con| {
                ::redis::pipe()
                    .cmd("XLEN")
                    .arg(&queue)
                    .cmd("XRANGE")
                    .arg(&queue)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query(con)
            })?;
            backlog.entries += len;
            // A stream id is "<unix ms>-<sequence>".
            let queued_ms = first
                .ids
                .first()
                .and_then(|e| e.id.split('-').next())
                .and_then(|ms| ms.parse::<u64>().ok());
            backlog.oldest_ms = match (backlog.oldest_ms, queued_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(backlog)
    }

    fn risks(&self) -> Result<Vec<String>, StoreError> {
        let wait = self.replication.map_or(0, |r| r.replicas);
        Ok(super::durability::queued_risks(&self.durability()?, wait))
    }
}
