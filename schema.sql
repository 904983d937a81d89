-- seckill: the order store on MySQL / MariaDB.
--
-- By hand:  mariadb -uroot < schema.sql     (creates the database `seckill`)
-- The server needs no manual step: `MysqlStore::open` creates the database
-- named in its URL and runs the CREATE TABLE statements below when the
-- tables are missing (it skips the CREATE DATABASE and USE lines, so this
-- file is the only copy of the DDL). Keep every statement ending in ";" at
-- the end of a line, and no ";" inside a statement.
--
-- The order store is the truth of a sale: at start the stock counter is
-- rebuilt from it (units left = total - live orders), so a committed order
-- must never be lost (InnoDB with innodb_flush_log_at_trx_commit = 1, the
-- default) and never exist twice.
--
-- Conventions:
--   * ids, user ids and order numbers are BIGINT UNSIGNED: the server uses
--     all 64 bits (order numbers above 2^63 are normal).
--   * *_ms columns are milliseconds since the Unix epoch, as the seckill
--     server stamps them. created_at / updated_at are maintained by the
--     database for operators, in UTC (the server's sessions run with
--     time_zone = '+00:00').

CREATE DATABASE IF NOT EXISTS seckill
    CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE seckill;

-- One row per goods on sale. Small and read at start into the server's
-- catalog. Orders for a goods are only written after it is loaded from here.
CREATE TABLE IF NOT EXISTS goods (
    id          BIGINT UNSIGNED  NOT NULL AUTO_INCREMENT,
    -- At most 200 characters: the protocol's MAX_NAME_LEN is 200 bytes.
    name        VARCHAR(200)     NOT NULL,
    price_cents BIGINT UNSIGNED  NOT NULL,
    -- Units ever put on sale (initial stock plus restocks). Units left are
    -- total minus the live orders, never stored, so they cannot drift.
    total       INT UNSIGNED     NOT NULL,
    -- The sale window: [start_ms, end_ms).
    start_ms    BIGINT UNSIGNED  NOT NULL,
    end_ms      BIGINT UNSIGNED  NOT NULL,
    -- The purchase rules (seckill_proto::SaleRules): live orders one user
    -- may hold (1..255, the slots of orders_one_live below), how long a
    -- buyer has to pay before the order is cancelled and its unit returned,
    -- and whether BUY needs a purchase token.
    per_user_limit TINYINT UNSIGNED NOT NULL DEFAULT 1,
    pay_window_ms  BIGINT UNSIGNED  NOT NULL DEFAULT 900000,
    token_required BOOLEAN          NOT NULL DEFAULT FALSE,
    -- 0 = on sale, 1 = paused by an admin (SALE_CONTROL). Ending a sale
    -- early moves end_ms instead.
    state       TINYINT UNSIGNED NOT NULL DEFAULT 0,
    -- The goods' fencing token. Each reconciliation (by any server) takes a
    -- new, higher one here before it counts the orders, and loads the stock
    -- store under it; an order writer's batch counts its orders in
    -- orders_written on the condition that the goods still has the epoch
    -- their units were reserved under, in the batch's transaction. So no
    -- order reserved before a reconciliation is written after it, and none
    -- of its units is sold twice. (Added to older tables at start.)
    epoch          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    orders_written BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- Raised by every sale control (state, start_ms, end_ms): the stock
    -- store keeps the controls of the highest version it was given, so a
    -- server's late write of an older state cannot undo a newer one.
    sale_version   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- The buckets the goods' stock is split over in Redis (1: not split),
    -- fixed when it is added (ADD_GOODS). (Added to older tables at start.)
    buckets        SMALLINT UNSIGNED NOT NULL DEFAULT 1,
    -- Orders of the goods that are live (created or paid), kept by every
    -- transaction that writes or cancels one: an order writer's batch adds
    -- its orders on the condition that live_orders stays within total, so
    -- the database itself never holds more live orders than units, whatever
    -- the stock store says (a Redis failover that lost deductions, a bug).
    -- Counted again from the orders by every reconciliation of the goods.
    -- (Added to older tables at start, counted from the orders.)
    live_orders    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- Until when the goods may have unpaid orders to expire (Unix ms): the
    -- latest end of a payment window of its created orders, or the time
    -- they were written if later, raised by every order writer's batch
    -- that writes some. The expiry sweep reads only the goods whose mark is
    -- recent, and every goods now and then (src/store/mysql/sweep.rs).
    -- (Added to older tables at start, from their orders.)
    unpaid_until_ms BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at  DATETIME(3)      NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3)      NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                 ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    -- The goods the expiry sweep reads (those with a recent mark).
    KEY goods_unpaid (unpaid_until_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per order. Written by the server's order writer in batches, one
-- transaction per batch (group commit), hundreds to thousands of rows per
-- second during a sale.
CREATE TABLE IF NOT EXISTS orders (
    -- A surrogate key: InnoDB clusters rows by the primary key, and an
    -- increasing one keeps inserts appending instead of splitting pages.
    -- Order numbers increase with time on one server, but several servers'
    -- batches interleave: keyed by order_no, two servers' rows took 2.6
    -- times the pages and saved no CPU (BENCHMARKS.md, "order_no as the
    -- primary key, tried").
    id          BIGINT UNSIGNED  NOT NULL AUTO_INCREMENT,
    order_no    BIGINT UNSIGNED  NOT NULL,
    user_id     BIGINT UNSIGNED  NOT NULL,
    goods_id    BIGINT UNSIGNED  NOT NULL,
    -- 0 created, 1 paid, 2 cancelled (seckill_proto::OrderState).
    state       TINYINT UNSIGNED NOT NULL DEFAULT 0,
    -- Which of the user's purchase slots of the goods this order holds:
    -- 1..per_user_limit for a live order (created or paid), NULL once it is
    -- cancelled (a cancel sets state = 2 and live_slot = NULL in one
    -- UPDATE). See orders_one_live below.
    live_slot   TINYINT UNSIGNED NULL DEFAULT 1,
    -- When the server created the order (its clock, not the database's).
    created_ms  BIGINT UNSIGNED  NOT NULL,
    -- The end of the payment window (created_ms + the goods' pay_window_ms):
    -- a created order still unpaid then is cancelled by whichever server's
    -- expiry sweep gets its row lock first, and its unit returned.
    pay_by_ms   BIGINT UNSIGNED  NOT NULL,
    created_at  DATETIME(3)      NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3)      NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                 ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    -- The order number is what clients hold and what a retried batch is
    -- recognised by: unique, and the lookup key for an order.
    UNIQUE KEY orders_order_no (order_no),
    -- THE PURCHASE LIMIT, enforced by the database itself as the last guard
    -- behind the stock counter: a user's live orders of a goods hold
    -- distinct slots 1..per_user_limit (1 only, by default: one live order
    -- per user per goods). NULLs never collide in a unique key, so cancelled
    -- orders (live_slot NULL) fall outside it and the user may buy again.
    -- User first, so that it also serves a user's orders (LIST_ORDERS, by
    -- its user_id prefix: a user's orders are few, sorting them is free)
    -- and a user's live orders of a goods (find_order, the slot choice). A
    -- separate index of a user's orders cost MariaDB 1.5-3.5 us of CPU per
    -- inserted order (BENCHMARKS.md, "what each index of orders costs").
    -- Its locking reads need no gap locks: order batches run at READ
    -- COMMITTED (src/store/mysql/calls.rs, Call::ORDERS), else a gap past
    -- one user's slots would hold up another goods' orders of the next user.
    -- A duplicate-key check still locks a gap (at every level): a user's
    -- second order, or a re-buy soon after a cancel (before InnoDB purges
    -- the old entry), can hold up a neighbouring user's order of another
    -- goods for the length of one batch.
    -- Tables made before keep (goods_id, user_id, live_slot) and
    -- orders_by_user, and work as they are (CHANGELOG.md has the ALTER).
    UNIQUE KEY orders_one_live (user_id, goods_id, live_slot),
    -- The orders of a goods, by state and end of payment window. By its
    -- goods_id prefix it serves the reads of a goods' orders (the live
    -- holders that reconciliation and the stock rebuild read, by a plain
    -- read after a lock of the goods' row: a read that locked this index
    -- would deadlock with PAYs, which move entries) and the foreign key.
    -- In full it serves the expiry
    -- sweep: a goods' created orders whose window has closed, one range per
    -- goods, for the goods of goods_unpaid. One index for both: a second
    -- cost MariaDB about 2 us of CPU per inserted order (BENCHMARKS.md,
    -- "one index of a goods' orders, with the goods to sweep"). A new order goes
    -- at the end of its goods' created orders, so it costs inserts little.
    -- Tables made before have orders_by_goods (goods_id) and orders_due
    -- (state, pay_by_ms) and work as they are (CHANGELOG.md has the ALTER).
    KEY orders_by_goods (goods_id, state, pay_by_ms),
    -- An order is always for a known goods. Costs a shared lock on the goods
    -- row per batch, which a restock and a read of the holders wait on, for
    -- one commit.
    CONSTRAINT orders_goods FOREIGN KEY (goods_id) REFERENCES goods (id),
    -- A cancelled order never holds a slot (else it would block a re-buy).
    CONSTRAINT orders_cancelled_frees_slot CHECK (state <> 2 OR live_slot IS NULL)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per node id (0..1023) a server has leased for its order numbers
-- (src/store/nodes.rs, src/lease.rs): no two live servers on this database
-- make order numbers under one id. A server claims a free id at start and
-- renews its lease every few seconds; an id whose lease ran out (its server
-- was killed or cut off) may be taken over. Times are this database's clock.
CREATE TABLE IF NOT EXISTS nodes (
    node_id          SMALLINT UNSIGNED NOT NULL,
    -- The holding server process's random token; 0 once it released the id.
    holder           BIGINT UNSIGNED   NOT NULL,
    -- Who holds it, for operators: pid, host and listening address.
    holder_info      VARCHAR(200)      NOT NULL,
    -- The lease ends then unless renewed (UTC, UTC_TIMESTAMP(6)).
    expires_at       DATETIME(6)       NOT NULL,
    -- The fence: no order number of this id is stamped later than this
    -- (Unix ms); a new holder stamps its numbers after it.
    numbers_until_ms BIGINT UNSIGNED   NOT NULL,
    PRIMARY KEY (node_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The client request ids of ADD_GOODS (PROTOCOL.md, section 9): an admin
-- whose ADD_GOODS reply was lost sends it again under the same id and gets
-- the goods the first one made, not a second one. Written in the goods'
-- own transaction; the primary key makes one goods per id even when two
-- servers add under one id at once. The id is stored without its repeat
-- mark (bit 127), as BINARY(16) big-endian.
CREATE TABLE IF NOT EXISTS goods_requests (
    request_id BINARY(16)      NOT NULL,
    goods_id   BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (request_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The client request ids of BUYs, kept only for a stock store in process
-- memory (no --redis), which starts empty: at start they are given back to
-- it from here, so a repeat of a BUY after a restart gets its order. Written
-- in the orders' own transaction, kept as long as a stock store remembers
-- one (an hour), then pruned by the order writer. With Redis, which keeps
-- its own, the table stays empty. Per goods, as the stock stores keep them.
CREATE TABLE IF NOT EXISTS buy_requests (
    goods_id     BIGINT UNSIGNED NOT NULL,
    request_id   BINARY(16)      NOT NULL,
    user_id      BIGINT UNSIGNED NOT NULL,
    order_no     BIGINT UNSIGNED NOT NULL,
    forget_at_ms BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (goods_id, request_id),
    KEY buy_requests_due (forget_at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
