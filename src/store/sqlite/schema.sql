-- seckill: the order store on SQLite (the embedded one; MySQL's is
-- schema.sql at the repository root).
--
-- By hand:  sqlite3 seckill.db < src/store/sqlite/schema.sql
-- The server needs no manual step: `SqliteStore::open` runs this file (it is
-- compiled in) on every start; each statement does nothing when its table or
-- index exists.
--
-- Conventions, as in MySQL's schema:
--   * SQLite integers are signed 64-bit; ids, user ids, order numbers and
--     *_ms values are u64 on the wire and stored bit for bit, so a value
--     above 2^63 is a negative number here and reads back as itself.
--   * *_ms columns are milliseconds since the Unix epoch, as the seckill
--     server stamps them (updated_ms too: SQLite keeps no clock of its own).
--   * orders.state: 0 created, 1 paid, 2 cancelled (seckill_proto::OrderState).

CREATE TABLE IF NOT EXISTS goods (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL,
    price_cents    INTEGER NOT NULL,
    -- Units ever put on sale (initial stock plus restocks).
    total          INTEGER NOT NULL,
    -- The sale window: [start_ms, end_ms).
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    per_user_limit INTEGER NOT NULL DEFAULT 1,
    pay_window_ms  INTEGER NOT NULL,
    token_required INTEGER NOT NULL DEFAULT 0,
    -- 1 = paused by an admin (SALE_CONTROL).
    paused         INTEGER NOT NULL DEFAULT 0,
    -- The goods' fencing token and the orders written under it, as in
    -- MySQL's schema.sql (added to older files at start).
    epoch          INTEGER NOT NULL DEFAULT 0,
    orders_written INTEGER NOT NULL DEFAULT 0,
    -- Raised by every sale control, as in MySQL's schema.sql.
    sale_version   INTEGER NOT NULL DEFAULT 0,
    -- As in MySQL's schema.sql.
    buckets        INTEGER NOT NULL DEFAULT 1,
    -- Live orders, kept as in MySQL's schema.sql.
    live_orders    INTEGER NOT NULL DEFAULT 0,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    order_no    INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    goods_id    INTEGER NOT NULL REFERENCES goods(id),
    state       INTEGER NOT NULL DEFAULT 0,
    -- Which of the user's purchase slots of the goods this order holds:
    -- 1..per_user_limit while it is live (created or paid), NULL once it is
    -- cancelled. See orders_one_live below.
    live_slot   INTEGER,
    created_ms  INTEGER NOT NULL,
    -- The end of the payment window: unpaid then, the order is cancelled.
    pay_by_ms   INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    -- A cancelled order never holds a slot (else it would block a re-buy).
    CHECK (state <> 2 OR live_slot IS NULL)
);

-- THE PURCHASE LIMIT, the database's own guard behind the stock counter: a
-- user's live orders of a goods hold distinct slots 1..limit. A cancelled
-- order holds none (live_slot NULL, and NULLs never collide in a unique
-- index), so a user can buy again after a cancel.
CREATE UNIQUE INDEX IF NOT EXISTS orders_one_live
    ON orders (goods_id, user_id, live_slot);

-- The expiry sweep: created orders by the end of their payment window.
CREATE INDEX IF NOT EXISTS orders_due ON orders (pay_by_ms) WHERE state = 0;

-- A user's orders, newest first.
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_ms);

-- One row per node id a server has leased for its order numbers
-- (src/store/nodes.rs, src/lease.rs), as in MySQL's schema. One server at a
-- time holds the file (a lock, see SqliteStore::open_exclusive), so a lease
-- found here at start is a dead process's; the table then only carries each
-- id's fence, numbers_until_ms, from one server's life to the next.
CREATE TABLE IF NOT EXISTS nodes (
    node_id          INTEGER PRIMARY KEY,
    -- The holding server process's random token; 0 once it released the id.
    holder           INTEGER NOT NULL,
    -- Who holds it, for operators: pid, host and listening address.
    holder_info      TEXT    NOT NULL,
    -- The lease ends then unless renewed: Unix ms by SQLite's clock.
    expires_ms       INTEGER NOT NULL,
    -- The fence: no order number of this id is stamped later (Unix ms).
    numbers_until_ms INTEGER NOT NULL
);

-- The client request ids of ADD_GOODS, as in MySQL's schema: a repeat of an
-- ADD_GOODS gets the goods the first one made. The id without its repeat
-- mark, 16 bytes big-endian.
CREATE TABLE IF NOT EXISTS goods_requests (
    request_id BLOB    PRIMARY KEY,
    goods_id   INTEGER NOT NULL
);

-- The client request ids of BUYs, with the order each made, written in the
-- transaction that writes the order: the stock in memory keeps them too
-- (a repeat of a BUY gets its first order), but only while the process
-- lives; at start they are given back to it from here. Kept for as long as
-- a stock store remembers one (REQUEST_ID_TTL_MS), then pruned. The id
-- without its repeat mark, 16 bytes big-endian.
CREATE TABLE IF NOT EXISTS buy_requests (
    goods_id     INTEGER NOT NULL,
    request_id   BLOB    NOT NULL,
    user_id      INTEGER NOT NULL,
    order_no     INTEGER NOT NULL,
    forget_at_ms INTEGER NOT NULL,
    -- Per goods, as the stock stores keep them: an id a client (wrongly)
    -- used for two goods names an order of each.
    PRIMARY KEY (goods_id, request_id)
);
CREATE INDEX IF NOT EXISTS buy_requests_due ON buy_requests (forget_at_ms);
