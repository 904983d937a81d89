//! Showing what the server says: aligned tables for people, JSON for scripts.

use seckill_client::{Drift, Goods, Order, Purchase, PurchaseToken, SaleRules, Stat, StockParts};
use serde::{Serialize, Serializer};
use unicode_width::UnicodeWidthStr;

use super::input::{format_duration_ms, format_price, format_time};

/// Which side of its column a cell keeps to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A plain-text table: a header line, then one line per row, columns two
/// spaces apart and padded to their widest cell.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        // Terminal columns, not chars: a CJK character takes two, a
        // combining accent none.
        let width = |cell: &str| UnicodeWidthStr::width(cell);
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let (w, align) = (widths[i], self.columns[i].1);
                let pad = " ".repeat(w - width(cell));
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Left => line.extend([cell.as_str(), pad.as_str()]),
                    Align::Right => line.extend([pad.as_str(), cell.as_str()]),
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Text from the server, made safe for a terminal: a control character in a
/// goods name could break the table or send escape sequences to the screen,
/// and a bidirectional control (a right-to-left override) would reorder
/// the rest of the line.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// The Unicode bidirectional formatting characters (UAX #9): marks,
/// embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A 64-bit id as a JSON string: a JSON number above 2^53 loses its low
/// digits in JavaScript and in jq before 1.7, so a script would pay or
/// cancel the wrong order.
fn id_string<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// [`id_string`] for an id that may be missing (`null`).
fn maybe_id_string<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

pub fn goods_table(list: &[Goods]) -> String {
    use Align::*;
    let mut table = Table::new(&[
        ("ID", Right),
        ("NAME", Left),
        ("PRICE", Right),
        ("LEFT", Right),
        ("TOTAL", Right),
        ("STATE", Left),
        ("START", Left),
        ("END", Left),
        ("LIMIT", Right),
        ("PAY WINDOW", Left),
        ("TOKEN", Left),
    ]);
    for g in list {
        table.row(vec![
            g.id.to_string(),
            printable(&g.name),
            format_price(g.price_cents),
            g.remaining.to_string(),
            g.total.to_string(),
            g.state.as_str().to_string(),
            format_time(g.start_ms),
            format_time(g.end_ms),
            g.rules.per_user_limit.to_string(),
            format_duration_ms(g.rules.pay_window_ms),
            if g.rules.token_required {
                "required"
            } else {
                "no"
            }
            .to_string(),
        ]);
    }
    table.render()
}

/// Orders, one a line, with the end of each one's payment window.
pub fn orders_table(orders: &[Order]) -> String {
    use Align::*;
    let mut table = Table::new(&[
        ("ORDER", Right),
        ("USER", Right),
        ("GOODS", Right),
        ("STATE", Left),
        ("CREATED", Left),
        ("PAY BY", Left),
    ]);
    for order in orders {
        table.row(vec![
            order.order_no.to_string(),
            order.user_id.to_string(),
            order.goods_id.to_string(),
            order.state.as_str().to_string(),
            format_time(order.created_ms),
            format_time(order.pay_by_ms),
        ]);
    }
    table.render()
}

pub fn stats_table(stats: &[Stat]) -> String {
    let mut table = Table::new(&[("NAME", Align::Left), ("VALUE", Align::Right)]);
    for stat in stats {
        table.row(vec![printable(&stat.name), stat.value.to_string()]);
    }
    table.render()
}

/// RECONCILE's findings: each goods' stock-store entry as found (`missing`
/// when it held none) and as left, and the drift between them.
pub fn reconcile_table(drifts: &[Drift]) -> String {
    use Align::*;
    let mut table = Table::new(&[
        ("GOODS", Right),
        ("FOUND LEFT", Right),
        ("FOUND HOLDERS", Right),
        ("LEFT", Right),
        ("HOLDERS", Right),
        ("DRIFT", Right),
    ]);
    for d in drifts {
        table.row(vec![
            d.goods_id.to_string(),
            d.found_remaining
                .map_or_else(|| "missing".to_string(), |n| n.to_string()),
            d.found_holders.to_string(),
            d.remaining.to_string(),
            d.holders.to_string(),
            signed(d.drift()),
        ]);
    }
    table.render()
}

/// Where each goods' units are in the stock store (`goods show --stock`,
/// `reconcile`): BALANCED says whether pool, units in flight, buckets and
/// holders add up to the total, and by how much they are off if not.
pub fn stock_table(parts: &[StockParts]) -> String {
    use Align::*;
    let mut table = Table::new(&[
        ("GOODS", Right),
        ("TOTAL", Right),
        ("POOL", Right),
        ("IN FLIGHT", Right),
        ("BUCKETS", Left),
        ("HOLDERS", Right),
        ("BALANCED", Left),
    ]);
    for p in parts {
        let buckets: Vec<String> = p.buckets.iter().map(u32::to_string).collect();
        let off = p.accounted() - i64::from(p.total);
        table.row(vec![
            p.goods_id.to_string(),
            p.total.to_string(),
            p.pool.to_string(),
            p.in_flight.to_string(),
            buckets.join(" "),
            p.holders.to_string(),
            if off == 0 {
                "yes".to_string()
            } else {
                format!("no ({} units)", signed(off))
            },
        ]);
    }
    table.render()
}

/// A difference with its sign, `+3` or `-1`; no change is a plain `0`.
fn signed(n: i64) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{n:+}")
    }
}

/// The machine name of a BUY outcome, as in the protocol's status names.
pub fn outcome(purchase: Purchase) -> &'static str {
    match purchase {
        Purchase::Ordered(_) => "ordered",
        Purchase::AlreadyBought(_) => "already_bought",
        Purchase::SoldOut => "sold_out",
        Purchase::NotStarted => "not_started",
        Purchase::Ended => "ended",
        Purchase::Paused => "paused",
    }
}

/// A BUY outcome in words.
pub fn purchase_line(purchase: Purchase) -> String {
    match purchase {
        Purchase::Ordered(no) => format!("ordered: order {no}"),
        Purchase::AlreadyBought(no) => format!("already bought: order {no}"),
        Purchase::SoldOut => "sold out".into(),
        Purchase::NotStarted => "the sale has not started".into(),
        Purchase::Ended => "the sale has ended".into(),
        Purchase::Paused => "the sale is paused".into(),
    }
}

/// A purchase token in words, with what it is good for and until when.
pub fn token_line(token: &PurchaseToken, user_id: u64, goods_id: u64) -> String {
    format!(
        "token {} for user {user_id} and goods {goods_id}, valid until {}",
        token.token,
        format_time(token.expires_ms)
    )
}

/// A purchase token for `--json`.
#[derive(Serialize)]
pub struct TokenJson {
    #[serde(serialize_with = "id_string")]
    user_id: u64,
    #[serde(serialize_with = "id_string")]
    goods_id: u64,
    #[serde(serialize_with = "id_string")]
    token: u64,
    expires: String,
    expires_ms: u64,
}

impl TokenJson {
    pub fn new(token: &PurchaseToken, user_id: u64, goods_id: u64) -> TokenJson {
        TokenJson {
            user_id,
            goods_id,
            token: token.token,
            expires: format_time(token.expires_ms),
            expires_ms: token.expires_ms,
        }
    }
}

/// The outcome of `buy` for `--json`: `order_no` is null unless the
/// outcome is `ordered` or `already_bought`.
#[derive(Serialize)]
pub struct BuyJson {
    pub outcome: &'static str,
    #[serde(serialize_with = "maybe_id_string")]
    pub order_no: Option<u64>,
    #[serde(serialize_with = "id_string")]
    pub user_id: u64,
    #[serde(serialize_with = "id_string")]
    pub goods_id: u64,
    pub request_id: String,
}

/// A TOKEN the sale refused (not started, ended, paused), for `--json`:
/// BUY's outcome names, and `token` null.
#[derive(Serialize)]
pub struct NoTokenJson {
    pub outcome: &'static str,
    pub token: Option<String>,
    #[serde(serialize_with = "id_string")]
    pub user_id: u64,
    #[serde(serialize_with = "id_string")]
    pub goods_id: u64,
}

/// Any command that did not succeed, for `--json`: the protocol's status
/// name, or the CLI's own for a failure that is not the server's answer,
/// and a message for people. The fields after those two are there when
/// they apply.
#[derive(Serialize)]
pub struct FailureJson {
    pub status: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    /// `order` with no order, `pay` and `cancel` refused: the order or goods
    /// asked about.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "maybe_id_string"
    )]
    pub user_id: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "maybe_id_string"
    )]
    pub goods_id: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "maybe_id_string"
    )]
    pub order_no: Option<u64>,
    /// `buy` whose outcome is unknown: the id that tries it again safely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_request_id: Option<String>,
}

impl FailureJson {
    pub fn new(status: impl Into<String>, message: impl Into<String>) -> FailureJson {
        FailureJson {
            status: status.into(),
            message: message.into(),
            exit_code: None,
            user_id: None,
            goods_id: None,
            order_no: None,
            retry_request_id: None,
        }
    }
}

/// A goods for `--json`: raw numbers for programs beside readable forms.
#[derive(Serialize)]
pub struct GoodsJson<'a> {
    #[serde(serialize_with = "id_string")]
    id: u64,
    name: &'a str,
    price: String,
    price_cents: u64,
    total: u32,
    remaining: u32,
    state: &'static str,
    start: String,
    start_ms: u64,
    end: String,
    end_ms: u64,
    rules: RulesJson,
}

/// The sale rules of a goods for `--json`.
#[derive(Serialize)]
pub struct RulesJson {
    per_user_limit: u8,
    pay_window: String,
    pay_window_ms: u64,
    token_required: bool,
}

impl From<&SaleRules> for RulesJson {
    fn from(r: &SaleRules) -> Self {
        RulesJson {
            per_user_limit: r.per_user_limit,
            pay_window: format_duration_ms(r.pay_window_ms),
            pay_window_ms: r.pay_window_ms,
            token_required: r.token_required,
        }
    }
}

impl<'a> From<&'a Goods> for GoodsJson<'a> {
    fn from(g: &'a Goods) -> Self {
        GoodsJson {
            id: g.id,
            name: &g.name,
            price: format_price(g.price_cents),
            price_cents: g.price_cents,
            total: g.total,
            remaining: g.remaining,
            state: g.state.as_str(),
            start: format_time(g.start_ms),
            start_ms: g.start_ms,
            end: format_time(g.end_ms),
            end_ms: g.end_ms,
            rules: RulesJson::from(&g.rules),
        }
    }
}

/// One goods of RECONCILE for `--json`: `found_remaining` is null when the
/// stock store held no stock for the goods.
#[derive(Serialize)]
pub struct DriftJson {
    #[serde(serialize_with = "id_string")]
    goods_id: u64,
    found_remaining: Option<u32>,
    found_holders: u32,
    remaining: u32,
    holders: u32,
    drift: i64,
}

impl From<&Drift> for DriftJson {
    fn from(d: &Drift) -> Self {
        DriftJson {
            goods_id: d.goods_id,
            found_remaining: d.found_remaining,
            found_holders: d.found_holders,
            remaining: d.remaining,
            holders: d.holders,
            drift: d.drift(),
        }
    }
}

/// Where a goods' units are, for `--json`.
#[derive(Serialize)]
pub struct StockJson {
    #[serde(serialize_with = "id_string")]
    goods_id: u64,
    total: u32,
    pool: u32,
    in_flight: i64,
    buckets: Vec<u32>,
    holders: u64,
    /// Pool, in flight, buckets and holders add up to the total.
    balanced: bool,
}

impl From<&StockParts> for StockJson {
    fn from(p: &StockParts) -> Self {
        StockJson {
            goods_id: p.goods_id,
            total: p.total,
            pool: p.pool,
            in_flight: p.in_flight,
            buckets: p.buckets.clone(),
            holders: p.holders,
            balanced: p.balanced(),
        }
    }
}

/// An order for `--json`.
#[derive(Serialize)]
pub struct OrderJson {
    #[serde(serialize_with = "id_string")]
    order_no: u64,
    #[serde(serialize_with = "id_string")]
    user_id: u64,
    #[serde(serialize_with = "id_string")]
    goods_id: u64,
    state: &'static str,
    created: String,
    created_ms: u64,
    pay_by: String,
    pay_by_ms: u64,
}

impl From<&Order> for OrderJson {
    fn from(o: &Order) -> Self {
        OrderJson {
            order_no: o.order_no,
            user_id: o.user_id,
            goods_id: o.goods_id,
            state: o.state.as_str(),
            created: format_time(o.created_ms),
            created_ms: o.created_ms,
            pay_by: format_time(o.pay_by_ms),
            pay_by_ms: o.pay_by_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seckill_client::{GoodsState, OrderState};

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut t = Table::new(&[("ID", Align::Right), ("NAME", Align::Left)]);
        t.row(vec!["7".into(), "Café".into()]);
        t.row(vec!["1000".into(), "x".into()]);
        assert_eq!(t.render(), "  ID  NAME\n   7  Café\n1000  x\n");
    }

    /// A CJK character takes two terminal columns: the column after a CJK
    /// name starts where it does after a Latin one.
    #[test]
    fn wide_characters_are_padded_by_their_columns() {
        let mut t = Table::new(&[("NAME", Align::Left), ("LEFT", Align::Right)]);
        t.row(vec!["小米手机 14".into(), "3".into()]);
        t.row(vec!["Phone".into(), "42".into()]);
        assert_eq!(
            t.render(),
            "NAME         LEFT\n小米手机 14     3\nPhone          42\n"
        );
    }

    /// A right-to-left override in a goods name would reorder the rest of
    /// the row on the screen; it is shown as a replacement character.
    #[test]
    fn bidi_controls_do_not_reach_the_terminal() {
        assert_eq!(printable("abc\u{202e}fed"), "abc\u{fffd}fed");
        assert_eq!(printable("x\u{2067}y\u{200f}"), "x\u{fffd}y\u{fffd}");
        assert_eq!(printable("Café 手机"), "Café 手机");
    }

    /// Every 64-bit id is a JSON string, so that a value above 2^53
    /// survives JavaScript and older jq.
    #[test]
    fn ids_are_json_strings() {
        let big = (1u64 << 53) + 1;
        let order = Order {
            order_no: big,
            user_id: big + 2,
            goods_id: big + 4,
            state: OrderState::Created,
            created_ms: 1,
            pay_by_ms: 2,
        };
        let json = serde_json::to_value(OrderJson::from(&order)).unwrap();
        assert_eq!(json["order_no"], "9007199254740993");
        assert_eq!(json["user_id"], "9007199254740995");
        assert_eq!(json["goods_id"], "9007199254740997");
        let buy = BuyJson {
            outcome: "sold_out",
            order_no: None,
            user_id: 1,
            goods_id: 2,
            request_id: "ab".into(),
        };
        let json = serde_json::to_value(buy).unwrap();
        assert_eq!(json["order_no"], serde_json::Value::Null);
        assert_eq!(json["goods_id"], "2");
    }

    #[test]
    fn goods_show_price_and_times_for_people() {
        let g = Goods {
            id: 1,
            name: "Pho\x1b[2Jne".into(),
            price_cents: 99900,
            total: 100,
            remaining: 42,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_003_600_000,
            state: GoodsState::OnSale,
            rules: SaleRules::default(),
        };
        let text = goods_table(std::slice::from_ref(&g));
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            " 1  Pho\u{fffd}[2Jne  999.00    42    100  on_sale  \
             2023-11-14T22:13:20Z  2023-11-14T23:13:20Z      1  15m         no"
        );
        let json = serde_json::to_value(GoodsJson::from(&g)).unwrap();
        assert_eq!(json["price"], "999.00");
        assert_eq!(json["start"], "2023-11-14T22:13:20Z");
        assert_eq!(json["state"], "on_sale");
        assert_eq!(
            json["rules"],
            serde_json::json!({
                "per_user_limit": 1,
                "pay_window": "15m",
                "pay_window_ms": 900_000,
                "token_required": false,
            })
        );
    }

    #[test]
    fn orders_show_when_they_must_be_paid() {
        let order = |order_no, state| Order {
            order_no,
            user_id: 7,
            goods_id: 1,
            state,
            created_ms: 1_700_000_000_000,
            pay_by_ms: 1_700_000_900_000,
        };
        let orders = [
            order(1002, OrderState::Created),
            order(998, OrderState::Cancelled),
        ];
        assert_eq!(
            orders_table(&orders),
            "ORDER  USER  GOODS  STATE      CREATED               PAY BY\n \
              1002     7      1  created    2023-11-14T22:13:20Z  2023-11-14T22:28:20Z\n  \
               998     7      1  cancelled  2023-11-14T22:13:20Z  2023-11-14T22:28:20Z\n"
        );
        let json = serde_json::to_value(OrderJson::from(&orders[0])).unwrap();
        assert_eq!(json["pay_by"], "2023-11-14T22:28:20Z");
        assert_eq!(json["pay_by_ms"], 1_700_000_900_000_u64);
    }

    #[test]
    fn a_token_is_a_string_in_json_so_no_digit_is_lost() {
        let token = PurchaseToken {
            token: u64::MAX,
            expires_ms: 1_700_000_060_000,
        };
        let json = serde_json::to_value(TokenJson::new(&token, 7, 1)).unwrap();
        assert_eq!(json["token"], "18446744073709551615");
        assert_eq!(json["expires"], "2023-11-14T22:14:20Z");
        assert_eq!(
            token_line(&token, 7, 1),
            "token 18446744073709551615 for user 7 and goods 1, valid until 2023-11-14T22:14:20Z"
        );
    }

    #[test]
    fn reconcile_shows_missing_entries_and_signed_drift() {
        let drifts = [
            Drift {
                goods_id: 1,
                found_remaining: Some(41),
                found_holders: 59,
                remaining: 42,
                holders: 58,
            },
            Drift {
                goods_id: 2,
                found_remaining: None,
                found_holders: 0,
                remaining: 7,
                holders: 3,
            },
            Drift {
                goods_id: 30,
                found_remaining: Some(5),
                found_holders: 1,
                remaining: 2,
                holders: 1,
            },
            Drift {
                goods_id: 4,
                found_remaining: Some(9),
                found_holders: 1,
                remaining: 9,
                holders: 1,
            },
        ];
        assert_eq!(
            reconcile_table(&drifts),
            "GOODS  FOUND LEFT  FOUND HOLDERS  LEFT  HOLDERS  DRIFT\n    \
                 1          41             59    42       58     -1\n    \
                 2     missing              0     7        3     -7\n   \
                30           5              1     2        1     +3\n    \
                 4           9              1     9        1      0\n"
        );
        let json = serde_json::to_value(DriftJson::from(&drifts[1])).unwrap();
        assert_eq!(json["found_remaining"], serde_json::Value::Null);
        assert_eq!(json["remaining"], 7);
        assert_eq!(json["drift"], -7);
    }
}
