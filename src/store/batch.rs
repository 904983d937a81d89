//! Writing a batch of orders: the one algorithm both SQL order stores run,
//! inside the transaction their `insert_orders` opens.
//!
//! 0. Fenced batches (the `durable` mode): for each goods and epoch its
//!    orders' units were reserved under, the goods' row is updated on the
//!    condition that it still has that epoch; where it has not (a
//!    reconciliation came between), those orders are [`Written::Fenced`]
//!    (or `Stored`, if an earlier try of the batch wrote them). It is a
//!    write, not a locking read, so that a reconciliation's epoch bump and
//!    the batch conflict on every engine, Galera included. The same update
//!    counts the orders as live on the condition that the goods' live
//!    orders stay within its total; where they would not (the stock store
//!    sold a unit it did not have: it lost a deduction in a failover), those
//!    orders are [`Written::SoldOut`]. So the database never holds more live
//!    orders than units, whatever the stock store says.
//! 1. The purchase limit of each goods of the batch is read once.
//! 2. Orders of goods with a limit of 1 (the usual flash sale) go in
//!    chunks of one statement each (a multi-row INSERT, or MySQL's load of
//!    rows from memory), each in slot 1 of its user. A row that hits a
//!    unique key (an order number stored by an earlier try of the batch, or
//!    a second live order of a user) makes its chunk go in not at all, not
//!    an error; such a chunk is looked at again: its stored orders read at
//!    once, the rest tried again whole, then in halves down to the rows
//!    that clash, in batch order (of a user's two orders, the earlier one
//!    is written).
//! 3. Every order not yet known to be stored is placed on its own: an order
//!    number already stored is this order (a retried batch) or a bug; else
//!    it takes the first free slot of its user, or is a [`Written::Duplicate`]
//!    of the first order the user holds when every slot is taken.
//! 4. The goods' live orders are set right: step 0 counted every order
//!    (of a fenced group, or unfenced: the `queued` mode's, acknowledged
//!    already, counted and never refused), and only those that went in live
//!    count (a duplicate, an order an earlier try wrote, a cancelled one,
//!    does not).
//!
//! A store provides the statements, in its dialect, as a [`Table`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use seckill_proto::OrderState;

use super::{Epoch, GoodsId, OrderNo, OrderRecord, StoreError, UserId, Written};
use crate::clock::now_ms;

/// Proof that step 0 has written the goods' row of every order the batch
/// may insert (its fence, or its live count) in this transaction, which
/// holds that row to the commit: the statements that insert orders take
/// it. So a batch locks a goods' row before it inserts any of the goods'
/// orders (inserting first would take a shared lock on the goods' row,
/// through the foreign key, and the count then an exclusive one: two
/// servers' batches doing that at once deadlock each other), and the
/// batches of a goods queue on its row. Made by step 0 only.
pub(crate) struct GoodsRowsHeld(());

impl GoodsRowsHeld {
    /// For a test that wrote the goods' row itself first.
    #[cfg(test)]
    pub(crate) fn fenced_by_test() -> GoodsRowsHeld {
        GoodsRowsHeld(())
    }
}

/// The orders table of a SQL store, inside the transaction of a batch: the
/// statements [`write()`] needs.
pub(crate) trait Table {
    /// The store's own failure; a reused order number is reported through
    /// it as [`StoreError::Inconsistent`], which must roll the batch back.
    type Error: From<StoreError>;

    /// Rows per multi-row INSERT, within the database's limits on a
    /// statement.
    const ROWS_PER_INSERT: usize;

    /// Counts `orders` orders as written and live for a goods if it still
    /// has `epoch` and its live orders stay within its total, and raises its
    /// unpaid mark to `unpaid_until_ms` (see [`unpaid_until`]); else says
    /// which is not so, and changes nothing.
    fn fence(
        &mut self,
        goods: GoodsId,
        epoch: Epoch,
        orders: u32,
        unpaid_until_ms: u64,
    ) -> Result<Fence, Self::Error>;

    /// Adds `delta` (which may be negative) to a goods' live orders, and
    /// raises its unpaid mark to `unpaid_until_ms` (0: leaves it).
    fn add_live(
        &mut self,
        goods: GoodsId,
        delta: i64,
        unpaid_until_ms: u64,
    ) -> Result<(), Self::Error>;

    /// The purchase limit of a goods (0 is taken as 1).
    fn per_user_limit(&mut self, goods: GoodsId) -> Result<u8, Self::Error>;

    /// Inserts these orders, a live one in slot 1 and a cancelled one in
    /// none, in one statement: all of them (`true`), or, where a row hits a
    /// unique key, none (`false`: the statement is undone, the transaction
    /// goes on). All or none, so that the stored rows a refused chunk is
    /// found to have afterwards are never rows of this try that it would
    /// then not count as live.
    fn insert_chunk(
        &mut self,
        held: &GoodsRowsHeld,
        orders: &[&OrderRecord],
    ) -> Result<bool, Self::Error>;

    /// Whose orders these numbers (one to [`Table::ROWS_PER_INSERT`]) are,
    /// in one read: those stored, as (order number, user, goods), in any
    /// order; read so that they cannot change before the commit.
    fn owners(
        &mut self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, UserId, GoodsId)>, Self::Error>;

    /// A user's live orders of a goods with their slots, in slot order,
    /// locked until the commit.
    fn live_slots(
        &mut self,
        goods: GoodsId,
        user: UserId,
    ) -> Result<Vec<(OrderNo, u8)>, Self::Error>;

    /// Inserts one order in `slot` (`None`: it holds none).
    fn insert(
        &mut self,
        held: &GoodsRowsHeld,
        order: &OrderRecord,
        slot: Option<u8>,
    ) -> Result<(), Self::Error>;
}

/// Orders counted per goods: what a sweep that cancelled them gives back
/// to each goods' live orders.
pub(crate) fn per_goods(orders: &[OrderRecord]) -> BTreeMap<GoodsId, u64> {
    let mut counts = BTreeMap::new();
    for o in orders {
        *counts.entry(o.goods_id).or_default() += 1;
    }
    counts
}

/// Per goods with created orders among `orders`, written at `now_ms`: the
/// latest end of their payment windows, or `now_ms` if later. A store whose
/// expiry sweep reads goods by goods reads those whose mark is recent
/// (`store::mysql::sweep`); the write's own time makes the mark recent even
/// for orders written after their window closed (the `queued` mode's,
/// written late after an outage), so that they are swept too.
pub(crate) fn unpaid_until(orders: &[OrderRecord], now_ms: u64) -> BTreeMap<GoodsId, u64> {
    let mut marks = BTreeMap::new();
    for o in orders.iter().filter(|o| o.state == OrderState::Created) {
        let mark = marks.entry(o.goods_id).or_insert(now_ms);
        *mark = (*mark).max(o.pay_by_ms);
    }
    marks
}

/// What [`Table::fence`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fence {
    /// The orders are counted: write them.
    Taken,
    /// The goods has another epoch.
    Moved,
    /// The goods' live orders would exceed its total.
    Full,
}

/// Writes `orders`, each reserved under `epochs[i]` (none: not fenced),
/// and says what became of each, in order (see
/// [`OrderStore::commit_orders`](super::OrderStore::commit_orders)). The
/// caller commits on `Ok` and rolls back on `Err`.
pub(crate) fn write<T: Table>(
    table: &mut T,
    orders: &[OrderRecord],
    epochs: &[Epoch],
) -> Result<Vec<Written>, T::Error> {
    let (mut written, counted, held) = fence(table, orders, epochs)?;
    let mut new = vec![false; orders.len()];
    let limits = limits_of(orders, |goods| {
        Ok::<_, T::Error>(table.per_user_limit(goods)?.max(1))
    })?;
    let single: Vec<usize> = (0..orders.len())
        .filter(|&i| written[i].is_none() && limits[&orders[i].goods_id] == 1)
        .collect();
    // Chunks still to insert, the next last, and whether the stored order
    // numbers among them were looked up already.
    let mut todo: Vec<(Vec<usize>, bool)> = single
        .chunks(T::ROWS_PER_INSERT)
        .rev()
        .map(|chunk| (chunk.to_vec(), false))
        .collect();
    while let Some((chunk, looked_up)) = todo.pop() {
        let rows: Vec<&OrderRecord> = chunk.iter().map(|&i| &orders[i]).collect();
        if table.insert_chunk(&held, &rows)? {
            for &i in &chunk {
                written[i] = Some(Written::Stored);
                new[i] = true;
            }
            continue;
        }
        // Refused as a whole. Its orders an earlier try of the batch
        // stored, found in one read, are this batch's; the rest is tried
        // again, whole if that took some out, else in halves, down to
        // single rows, which step 3 places (each says what became of it).
        // So a retried batch costs a read per chunk, and a user's second
        // order some 2 log2(chunk) statements, not a round trip per row
        // (a chunk where every row clashes costs 2n - 1: none is written
        // this way in practice, the stock store refusing second orders).
        let rest = if looked_up {
            chunk
        } else {
            let found = stored_of(table, orders, &chunk)?;
            let rest: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| {
                    let stored = found.contains(&orders[i].order_no);
                    if stored {
                        written[i] = Some(Written::Stored);
                    }
                    !stored
                })
                .collect();
            if rest.len() < chunk.len() {
                if !rest.is_empty() {
                    todo.push((rest, true));
                }
                continue;
            }
            rest
        };
        if rest.len() > 1 {
            let (first, second) = rest.split_at(rest.len() / 2);
            todo.push((second.to_vec(), true));
            todo.push((first.to_vec(), true));
        }
    }
    for (i, o) in orders.iter().enumerate() {
        if written[i].is_none() {
            let (w, inserted) = place(table, &held, o, limits[&o.goods_id])?;
            written[i] = Some(w);
            new[i] = inserted;
        }
    }
    // Step 4: live orders as they went in, less what step 0 counted.
    let mut live: BTreeMap<GoodsId, i64> = counted
        .into_iter()
        .map(|(goods, n)| (goods, -i64::try_from(n).unwrap_or(i64::MAX)))
        .collect();
    for (o, _) in orders.iter().zip(&new).filter(|(_, &n)| n) {
        if o.state != OrderState::Cancelled {
            *live.entry(o.goods_id).or_default() += 1;
        }
    }
    for (goods, delta) in live {
        if delta != 0 {
            table.add_live(goods, delta, 0)?;
        }
    }
    Ok(written.into_iter().flatten().collect())
}

/// What step 0 found: for each order, what became of it if its goods has
/// moved on to another epoch or has no unit left for it (`None`: to
/// write); the live orders counted per goods; and the proof that the rows
/// of the goods to write are held.
type Fenced = (Vec<Option<Written>>, BTreeMap<GoodsId, u64>, GoodsRowsHeld);

/// Step 0 (see [`Fenced`]).
fn fence<T: Table>(
    table: &mut T,
    orders: &[OrderRecord],
    epochs: &[Epoch],
) -> Result<Fenced, T::Error> {
    let mut written = vec![None; orders.len()];
    let unpaid = unpaid_until(orders, now_ms());
    let mark = |goods: GoodsId| unpaid.get(&goods).copied().unwrap_or(0);
    if epochs.is_empty() {
        // Unfenced orders are counted too, before they go in, for the same
        // reason as the fence is a write: the goods' row is locked first.
        // Inserting first would take a shared lock on it (the orders'
        // foreign key) and the count then an exclusive one, and two
        // servers' writers doing that at once deadlock each other.
        let counted = per_goods(orders);
        for (&goods, &n) in &counted {
            table.add_live(goods, i64::try_from(n).unwrap_or(i64::MAX), mark(goods))?;
        }
        return Ok((written, counted, GoodsRowsHeld(())));
    }
    let mut counted: BTreeMap<GoodsId, u64> = BTreeMap::new();
    if epochs.len() != orders.len() {
        let why = format!("{} epochs for {} orders", epochs.len(), orders.len());
        return Err(StoreError::Inconsistent(why).into());
    }
    let mut groups: BTreeMap<(GoodsId, Epoch), u32> = BTreeMap::new();
    for (o, &epoch) in orders.iter().zip(epochs) {
        *groups.entry((o.goods_id, epoch)).or_default() += 1;
    }
    for ((goods, epoch), count) in groups {
        let refused = match table.fence(goods, epoch, count, mark(goods))? {
            Fence::Taken => {
                *counted.entry(goods).or_default() += u64::from(count);
                continue;
            }
            Fence::Moved => Written::Fenced,
            Fence::Full => Written::SoldOut,
        };
        // An earlier try of this batch may have committed some of them
        // before the reconciliation (which then counted them), or before
        // the goods was full (with them): read at once, not one by one.
        let group: Vec<usize> = (0..orders.len())
            .filter(|&i| (orders[i].goods_id, epochs[i]) == (goods, epoch))
            .collect();
        let owners = owners_of(table, orders, &group)?;
        for i in group {
            let o = &orders[i];
            let mine = owners.get(&o.order_no) == Some(&(o.user_id, o.goods_id));
            written[i] = Some(if mine { Written::Stored } else { refused });
        }
    }
    // Every goods with orders left to write has taken its fence.
    Ok((written, counted, GoodsRowsHeld(())))
}

/// Who holds the stored ones of the order numbers of `indices` (into
/// `orders`), as (user, goods) by order number: [`Table::owners`], a chunk's
/// worth of numbers at a time.
fn owners_of<T: Table>(
    table: &mut T,
    orders: &[OrderRecord],
    indices: &[usize],
) -> Result<HashMap<OrderNo, (UserId, GoodsId)>, T::Error> {
    let numbers: Vec<OrderNo> = indices.iter().map(|&i| orders[i].order_no).collect();
    let mut owners = HashMap::new();
    for part in numbers.chunks(T::ROWS_PER_INSERT) {
        let found = table.owners(part)?.into_iter();
        owners.extend(found.map(|(order_no, user, goods)| (order_no, (user, goods))));
    }
    Ok(owners)
}

/// The orders of `chunk` (indices into `orders`) whose numbers are stored,
/// each checked to be the same user's order of the same goods.
fn stored_of<T: Table>(
    table: &mut T,
    orders: &[OrderRecord],
    chunk: &[usize],
) -> Result<HashSet<OrderNo>, T::Error> {
    let owners = owners_of(table, orders, chunk)?;
    let mut stored = HashSet::new();
    for &i in chunk {
        let o = &orders[i];
        if let Some(&owner) = owners.get(&o.order_no) {
            if owner != (o.user_id, o.goods_id) {
                return Err(reused(o.order_no).into());
            }
            stored.insert(o.order_no);
        }
    }
    Ok(stored)
}

/// A stored order number that is someone else's: order numbers are unique
/// by construction, so that is a bug.
fn reused(order_no: OrderNo) -> StoreError {
    StoreError::Inconsistent(format!("order number {order_no} is already used"))
}

/// Writes one order into the first free slot of its user, or says which
/// order the user holds when every slot is taken. An order number already
/// stored is this order, written by an earlier try of the batch (whatever
/// became of it since), unless it belongs to someone else: order numbers
/// are unique by construction, so that is a bug.
/// Says whether this call inserted it.
fn place<T: Table>(
    table: &mut T,
    held: &GoodsRowsHeld,
    o: &OrderRecord,
    limit: u8,
) -> Result<(Written, bool), T::Error> {
    if let Some((_, user, goods)) = table.owners(&[o.order_no])?.pop() {
        if (user, goods) == (o.user_id, o.goods_id) {
            return Ok((Written::Stored, false));
        }
        return Err(reused(o.order_no).into());
    }
    let live = table.live_slots(o.goods_id, o.user_id)?;
    match slot_for(o, &live, limit) {
        Ok(slot) => {
            table.insert(held, o, slot)?;
            Ok((Written::Stored, true))
        }
        Err(held) => Ok((Written::Duplicate(held), false)),
    }
}

/// Where the database puts order `o`, given its user's live orders of the
/// goods as (order number, slot): `Ok` with the slot to write, the first of
/// `1..=limit` none of them holds (`None` for a cancelled order, which holds
/// no slot and always fits), or `Err` with the first order held when every
/// slot is taken. A limit of 0 (which ADD_GOODS refuses) counts as 1.
fn slot_for(o: &OrderRecord, live: &[(OrderNo, u8)], limit: u8) -> Result<Option<u8>, OrderNo> {
    if o.state == OrderState::Cancelled {
        return Ok(None);
    }
    let free = (1..=limit.max(1)).find(|slot| live.iter().all(|&(_, held)| held != *slot));
    match (free, live.first()) {
        (Some(slot), _) => Ok(Some(slot)),
        (None, Some(&(first, _))) => Err(first),
        (None, None) => unreachable!("a slot of 1..=limit is free when none is held"),
    }
}

/// The purchase limit of each goods of a batch, looked up once per goods.
fn limits_of<E>(
    orders: &[OrderRecord],
    mut lookup: impl FnMut(GoodsId) -> Result<u8, E>,
) -> Result<HashMap<GoodsId, u8>, E> {
    let mut limits = HashMap::new();
    for o in orders {
        if let Entry::Vacant(slot) = limits.entry(o.goods_id) {
            slot.insert(lookup(o.goods_id)?);
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    //! The algorithm against a table in memory that keeps the two unique
    //! keys of the real ones; the stores run it against their databases in
    //! `conformance::orders`.

    use super::*;

    #[derive(Default)]
    struct Rows {
        /// (order, slot) per row.
        rows: Vec<(OrderRecord, Option<u8>)>,
        limit: u8,
        chunks: Vec<usize>,
        /// Reads of stored order numbers (`owners`).
        reads: usize,
        /// The goods' epoch, the orders counted by fences, its total and
        /// live orders.
        epoch: Epoch,
        fenced_in: u32,
        total: i64,
        live: i64,
    }

    impl Rows {
        fn fits(&self, o: &OrderRecord, slot: Option<u8>) -> bool {
            self.rows.iter().all(|(r, s)| {
                r.order_no != o.order_no
                    && (slot.is_none()
                        || (r.goods_id, r.user_id, *s) != (o.goods_id, o.user_id, slot))
            })
        }
    }

    impl Table for Rows {
        type Error = StoreError;
        const ROWS_PER_INSERT: usize = 2;

        fn fence(
            &mut self,
            _: GoodsId,
            epoch: Epoch,
            orders: u32,
            _: u64,
        ) -> Result<Fence, StoreError> {
            if epoch != self.epoch {
                return Ok(Fence::Moved);
            }
            if self.live + i64::from(orders) > self.total {
                return Ok(Fence::Full);
            }
            self.fenced_in += orders;
            self.live += i64::from(orders);
            Ok(Fence::Taken)
        }

        fn add_live(&mut self, _: GoodsId, delta: i64, _: u64) -> Result<(), StoreError> {
            self.live += delta;
            Ok(())
        }

        fn per_user_limit(&mut self, _: GoodsId) -> Result<u8, StoreError> {
            Ok(self.limit)
        }

        /// All or none, as a statement is undone.
        fn insert_chunk(
            &mut self,
            _: &GoodsRowsHeld,
            orders: &[&OrderRecord],
        ) -> Result<bool, StoreError> {
            self.chunks.push(orders.len());
            let before = self.rows.len();
            for o in orders {
                let slot = (o.state != OrderState::Cancelled).then_some(1);
                if !self.fits(o, slot) {
                    self.rows.truncate(before);
                    return Ok(false);
                }
                self.rows.push(((*o).clone(), slot));
            }
            Ok(true)
        }

        fn owners(
            &mut self,
            order_nos: &[OrderNo],
        ) -> Result<Vec<(OrderNo, UserId, GoodsId)>, StoreError> {
            self.reads += 1;
            let rows = self
                .rows
                .iter()
                .filter(|(r, _)| order_nos.contains(&r.order_no));
            Ok(rows
                .map(|(r, _)| (r.order_no, r.user_id, r.goods_id))
                .collect())
        }

        fn live_slots(
            &mut self,
            goods: GoodsId,
            user: UserId,
        ) -> Result<Vec<(OrderNo, u8)>, StoreError> {
            let mut live: Vec<(OrderNo, u8)> = self
                .rows
                .iter()
                .filter(|(r, _)| (r.goods_id, r.user_id) == (goods, user))
                .filter_map(|(r, slot)| Some((r.order_no, (*slot)?)))
                .collect();
            live.sort_unstable_by_key(|&(_, slot)| slot);
            Ok(live)
        }

        fn insert(
            &mut self,
            _: &GoodsRowsHeld,
            o: &OrderRecord,
            slot: Option<u8>,
        ) -> Result<(), StoreError> {
            assert!(self.fits(o, slot), "a placed row hit a unique key: {o:?}");
            self.rows.push((o.clone(), slot));
            Ok(())
        }
    }

    fn order(order_no: OrderNo, user_id: UserId) -> OrderRecord {
        OrderRecord {
            order_no,
            user_id,
            goods_id: 1,
            state: OrderState::Created,
            created_ms: 1,
            pay_by_ms: 2,
        }
    }

    fn table(limit: u8) -> Rows {
        Rows {
            limit,
            total: 1000,
            ..Rows::default()
        }
    }

    #[test]
    fn a_limit_of_one_goes_in_chunks_and_each_row_of_a_refused_one_says_what_became_of_it() {
        let mut t = table(1);
        let batch: Vec<_> = (1..=5).map(|n| order(n, n)).collect();
        assert_eq!(write(&mut t, &batch, &[]).unwrap(), [Written::Stored; 5]);
        assert_eq!(t.chunks, [2, 2, 1]);
        // Again, with a second order of user 3 in the middle: every chunk
        // is refused in part, and each row says what became of it.
        let mut again = batch.clone();
        again.insert(2, order(9, 3));
        assert_eq!(
            write(&mut t, &again, &[]).unwrap(),
            [
                Written::Stored,
                Written::Stored,
                Written::Duplicate(3),
                Written::Stored,
                Written::Stored,
                Written::Stored,
            ]
        );
        assert_eq!(t.rows.len(), 5);
    }

    /// A chunk refused for a second order of a user is placed row by row,
    /// and the orders of it that go in count as live.
    #[test]
    fn a_refused_chunk_counts_what_it_places() {
        let mut t = table(1);
        let batch = [order(1, 1), order(3, 1), order(2, 2)];
        assert_eq!(
            write(&mut t, &batch, &[]).unwrap(),
            [Written::Stored, Written::Duplicate(1), Written::Stored]
        );
        assert_eq!(t.live, 2);
    }

    /// A refused chunk of a retried batch costs one read of its stored
    /// order numbers, not one per row; a user's second order in a chunk is
    /// isolated by halving, the other rows going in as chunks.
    #[test]
    fn a_refused_chunk_is_looked_up_at_once_then_halved() {
        let mut t = table(1);
        let batch = [order(1, 1), order(2, 2)];
        write(&mut t, &batch, &[]).unwrap();
        // A retry: the chunk refused, its numbers read once.
        t.reads = 0;
        assert_eq!(write(&mut t, &batch, &[]).unwrap(), [Written::Stored; 2]);
        assert_eq!(t.reads, 1);
        assert_eq!(t.live, 2);
        // New orders, one of them a second order of user 1.
        t.chunks.clear();
        t.reads = 0;
        let batch = [order(3, 5), order(4, 1), order(5, 6), order(6, 7)];
        assert_eq!(
            write(&mut t, &batch, &[]).unwrap(),
            [
                Written::Stored,
                Written::Duplicate(1),
                Written::Stored,
                Written::Stored
            ]
        );
        // The first chunk, refused and read; its halves; the second chunk.
        // Then the refused row on its own (step 3: one more read).
        assert_eq!(t.chunks, [2, 1, 1, 2]);
        assert_eq!(t.reads, 2);
        assert_eq!(t.live, 5);
    }

    /// Of a user's two orders in one batch the earlier is written, even
    /// when its chunk is refused for another row and the later one's chunk
    /// is not.
    #[test]
    fn of_two_orders_of_a_user_the_earlier_is_written() {
        let mut t = table(1);
        t.rows.push((order(100, 9), Some(1)));
        t.live = 1;
        // Chunks of 2: [a second order of user 9, user 1's] [user 1's, user 2's].
        let batch = [order(1, 9), order(2, 1), order(3, 1), order(4, 2)];
        assert_eq!(
            write(&mut t, &batch, &[]).unwrap(),
            [
                Written::Duplicate(100),
                Written::Stored,
                Written::Duplicate(2),
                Written::Stored
            ]
        );
        assert_eq!(t.live, 3);
    }

    /// Orders reserved under the goods' epoch are written and counted;
    /// those of an older epoch are fenced, unless an earlier try of the
    /// batch wrote them.
    #[test]
    fn orders_of_an_older_epoch_are_fenced() {
        let mut t = Rows {
            epoch: 2,
            ..table(1)
        };
        let batch = [order(1, 1), order(2, 2), order(3, 3)];
        assert_eq!(
            write(&mut t, &batch, &[2, 1, 2]).unwrap(),
            [Written::Stored, Written::Fenced, Written::Stored]
        );
        assert_eq!(t.fenced_in, 2);
        assert_eq!(t.rows.len(), 2);
        // Written under epoch 2, then the goods moved on: a retry of the
        // batch finds them stored, and still does not write the fenced one.
        t.epoch = 3;
        assert_eq!(
            write(&mut t, &batch, &[2, 1, 2]).unwrap(),
            [Written::Stored, Written::Fenced, Written::Stored]
        );
        assert_eq!(t.rows.len(), 2);
        // A batch with epochs must give one per order.
        assert!(write(&mut t, &batch, &[3]).is_err());
    }

    /// The goods' live orders never exceed its total: a fenced group that
    /// would is refused whole (sold out), unless an earlier try wrote it;
    /// orders that go in count once, duplicates and repeats not at all.
    #[test]
    fn live_orders_stay_within_the_total() {
        let mut t = Rows {
            epoch: 1,
            total: 3,
            ..table(1)
        };
        let first = [order(1, 1), order(2, 2)];
        assert_eq!(
            write(&mut t, &first, &[1, 1]).unwrap(),
            [Written::Stored; 2]
        );
        assert_eq!(t.live, 2);
        // A retry of it, and a duplicate of user 2: nothing more is live.
        let again = [order(1, 1), order(2, 2), order(7, 2)];
        assert_eq!(
            write(&mut t, &again, &[1, 1, 1]).unwrap(),
            [Written::Stored, Written::Stored, Written::SoldOut]
        );
        assert_eq!(t.live, 2);
        let dup = [order(7, 2)];
        assert_eq!(write(&mut t, &dup, &[1]).unwrap(), [Written::Duplicate(2)]);
        assert_eq!(t.live, 2);
        // Two orders for the one unit left: both refused, none written.
        let over = [order(3, 3), order(4, 4)];
        assert_eq!(
            write(&mut t, &over, &[1, 1]).unwrap(),
            [Written::SoldOut; 2]
        );
        assert_eq!((t.live, t.rows.len()), (2, 2));
        let last = [order(3, 3)];
        assert_eq!(write(&mut t, &last, &[1]).unwrap(), [Written::Stored]);
        assert_eq!(t.live, 3);
        // Unfenced (queued, acknowledged) orders are counted, never refused.
        assert_eq!(
            write(&mut t, &[order(5, 5)], &[]).unwrap(),
            [Written::Stored]
        );
        assert_eq!(t.live, 4);
    }

    #[test]
    fn a_higher_limit_places_each_order_in_the_first_free_slot() {
        let mut t = table(0);
        assert_eq!(
            write(&mut t, &[order(1, 7), order(2, 7)], &[]).unwrap(),
            [Written::Stored, Written::Duplicate(1)],
            "a limit of 0 counts as 1"
        );
        let mut t = table(2);
        let cancelled = OrderRecord {
            state: OrderState::Cancelled,
            ..order(3, 7)
        };
        let batch = [order(1, 7), cancelled, order(2, 7), order(4, 7)];
        assert_eq!(
            write(&mut t, &batch, &[]).unwrap(),
            [
                Written::Stored,
                Written::Stored,
                Written::Stored,
                Written::Duplicate(1)
            ]
        );
        assert!(
            t.chunks.is_empty(),
            "no multi-row INSERT above a limit of 1"
        );
        let slots: Vec<_> = t.rows.iter().map(|(o, s)| (o.order_no, *s)).collect();
        assert_eq!(slots, [(1, Some(1)), (3, None), (2, Some(2))]);
    }

    #[test]
    fn an_order_number_of_another_order_fails_the_batch() {
        let mut t = table(1);
        write(&mut t, &[order(1, 7)], &[]).unwrap();
        match write(&mut t, &[order(2, 8), order(1, 8)], &[]) {
            Err(StoreError::Inconsistent(m)) => assert!(m.contains("order number 1"), "{m}"),
            other => panic!("a reused order number: {other:?}"),
        }
    }

    #[test]
    fn a_slot_is_the_first_free_one_and_none_for_a_cancelled_order() {
        let o = order(9, 7);
        assert_eq!(slot_for(&o, &[], 1), Ok(Some(1)));
        assert_eq!(slot_for(&o, &[(1, 1), (3, 3)], 3), Ok(Some(2)));
        assert_eq!(slot_for(&o, &[(2, 2), (1, 1)], 2), Err(2));
        let cancelled = OrderRecord {
            state: OrderState::Cancelled,
            ..o
        };
        assert_eq!(slot_for(&cancelled, &[(1, 1)], 1), Ok(None));
    }
}
