//! Batches of requests sent without waiting, and the exchange that matches
//! their replies back by id.

use seckill_proto::{
    NewGoods, Opcode, Reply, Request, RequestId, SaleAction, ALL_GOODS, MAX_NAME_LEN,
    MAX_TOKEN_LEN, NO_TOKEN,
};

use crate::connection::{Connection, ReplyFrame};
use crate::error::{Error, Result};

/// The bit a reply sets on its request's opcode.
const REPLY_BIT: u8 = 0x80;
/// The opcode of the frame a server sends just before it closes a connection
/// whose framing it gave up on.
const CONNECTION_ERROR: u8 = Opcode::Error as u8 | REPLY_BIT;

/// A batch of requests to send in one go with [`Client::execute`].
///
/// The builder methods chain, like `redis::pipe()`:
///
/// ```
/// use seckill_client::Pipeline;
///
/// let mut p = Pipeline::new();
/// p.buy(1, 7).get_goods(7).order_status(1, 7);
/// assert_eq!(p.len(), 3);
///
/// // One user's checkout: a token for goods 8, then their orders.
/// p.clear();
/// p.purchase_token(1, 8).list_orders(1);
/// assert_eq!(p.len(), 2);
/// ```
///
/// [`Client::execute`]: crate::Client::execute
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    requests: Vec<Request>,
    /// Why the batch cannot be sent: the first builder call given something
    /// the protocol cannot carry. [`Client::execute`] reports it before
    /// sending anything, so the builder methods can keep chaining.
    ///
    /// [`Client::execute`]: crate::Client::execute
    invalid: Option<String>,
}

impl Pipeline {
    /// An empty batch.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Adds any request. HELLO is the client's business at connect time;
    /// sending it again has no defined meaning in protocol version 1.
    pub fn add(&mut self, request: Request) -> &mut Pipeline {
        self.requests.push(request);
        self
    }

    /// Adds PING.
    pub fn ping(&mut self) -> &mut Pipeline {
        self.add(Request::Ping)
    }

    /// Adds LIST_GOODS.
    pub fn list_goods(&mut self) -> &mut Pipeline {
        self.add(Request::ListGoods)
    }

    /// Adds GET_GOODS for `goods_id`.
    pub fn get_goods(&mut self, goods_id: u64) -> &mut Pipeline {
        self.add(Request::GetGoods { goods_id })
    }

    /// Adds BUY of `goods_id` by `user_id`, without a purchase token.
    pub fn buy(&mut self, user_id: u64, goods_id: u64) -> &mut Pipeline {
        self.add(Request::Buy {
            user_id,
            goods_id,
            token: NO_TOKEN,
            request_id: None,
        })
    }

    /// Adds BUY of `goods_id` by `user_id` with a purchase token. `token` 0
    /// is [`NO_TOKEN`]: it adds nothing and makes the batch fail with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when it is
    /// executed, before anything is sent.
    pub fn buy_with_token(&mut self, user_id: u64, goods_id: u64, token: u64) -> &mut Pipeline {
        match buy_token(token) {
            Ok(token) => self.add(Request::Buy {
                user_id,
                goods_id,
                token,
                request_id: None,
            }),
            Err(why) => self.invalidate(why),
        }
    }

    /// Adds BUY of `goods_id` by `user_id` without a purchase token, named
    /// by a client request id (see
    /// [`Client::buy_with_request_id`](crate::Client::buy_with_request_id)).
    ///
    /// The other BUY methods of a pipeline add no id: a pipeline is a list
    /// of requests that may be executed more than once, and an id names one
    /// purchase, so the caller picks it. A batch whose BUYs all carry one
    /// may be sent again by a client of several servers after a connection
    /// failure; with one BUY without an id (a token is not enough: a
    /// restarted server may have forgotten it) it is not.
    pub fn buy_with_request_id(
        &mut self,
        user_id: u64,
        goods_id: u64,
        request_id: RequestId,
    ) -> &mut Pipeline {
        self.add(Request::Buy {
            user_id,
            goods_id,
            token: NO_TOKEN,
            request_id: Some(request_id),
        })
    }

    /// Adds BUY with a purchase token, named by a client request id. `token`
    /// 0 makes the batch fail, as [`buy_with_token`](Pipeline::buy_with_token)
    /// says.
    pub fn buy_with_token_and_request_id(
        &mut self,
        user_id: u64,
        goods_id: u64,
        token: u64,
        request_id: RequestId,
    ) -> &mut Pipeline {
        match buy_token(token) {
            Ok(token) => self.add(Request::Buy {
                user_id,
                goods_id,
                token,
                request_id: Some(request_id),
            }),
            Err(why) => self.invalidate(why),
        }
    }

    /// Adds TOKEN: a purchase token for one BUY of `goods_id` by `user_id`.
    pub fn purchase_token(&mut self, user_id: u64, goods_id: u64) -> &mut Pipeline {
        self.add(Request::Token { user_id, goods_id })
    }

    /// Adds PAY of `user_id`'s order `order_no`.
    pub fn pay(&mut self, user_id: u64, order_no: u64) -> &mut Pipeline {
        self.add(Request::Pay { user_id, order_no })
    }

    /// Adds CANCEL of `user_id`'s order `order_no`.
    pub fn cancel(&mut self, user_id: u64, order_no: u64) -> &mut Pipeline {
        self.add(Request::Cancel { user_id, order_no })
    }

    /// Adds LIST_ORDERS of `user_id`.
    pub fn list_orders(&mut self, user_id: u64) -> &mut Pipeline {
        self.add(Request::ListOrders { user_id })
    }

    /// Adds ORDER_STATUS of `user_id`'s order for `goods_id`.
    pub fn order_status(&mut self, user_id: u64, goods_id: u64) -> &mut Pipeline {
        self.add(Request::OrderStatus { user_id, goods_id })
    }

    /// Adds ADD_GOODS (admin), without a request id.
    pub fn add_goods(&mut self, goods: NewGoods) -> &mut Pipeline {
        self.add(Request::AddGoods {
            goods,
            request_id: None,
        })
    }

    /// Adds RESTOCK of `amount` units to `goods_id` (admin).
    pub fn restock(&mut self, goods_id: u64, amount: u32) -> &mut Pipeline {
        self.add(Request::Restock { goods_id, amount })
    }

    /// Adds SALE_CONTROL (admin): `action` on the sale of `goods_id`.
    pub fn sale_control(&mut self, goods_id: u64, action: SaleAction) -> &mut Pipeline {
        self.add(Request::SaleControl { goods_id, action })
    }

    /// Adds STATS (admin).
    pub fn stats(&mut self) -> &mut Pipeline {
        self.add(Request::Stats)
    }

    /// Adds RECONCILE (admin) of one goods, or of every goods with `None`.
    /// Goods ids start at 1: `Some(0)` adds nothing and makes the batch fail
    /// with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when
    /// it is executed, before anything is sent.
    pub fn reconcile(&mut self, goods: Option<u64>) -> &mut Pipeline {
        match reconcile_target(goods) {
            Ok(goods_id) => self.add(Request::Reconcile { goods_id }),
            Err(why) => self.invalidate(why),
        }
    }

    /// Marks the batch unsendable for `why`, keeping the first reason: it is
    /// the one the caller's code reached first.
    fn invalidate(&mut self, why: String) -> &mut Pipeline {
        self.invalid.get_or_insert(why);
        self
    }

    /// The requests, in the order they were added.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// How many requests the batch holds.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the batch holds no request.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Empties the batch, keeping its memory for the next one.
    pub fn clear(&mut self) {
        self.requests.clear();
        self.invalid = None;
    }

    /// Fails if a builder method was given something that cannot be sent.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.invalid {
            Some(why) => Err(Error::invalid_input(why.clone())),
            None => Ok(()),
        }
    }
}

/// The `goods_id` RECONCILE sends for `goods`: [`ALL_GOODS`] for every goods.
/// `Some(0)` names no goods, yet on the wire it would reconcile them all.
pub(crate) fn reconcile_target(goods: Option<u64>) -> Result<u64, String> {
    match goods {
        None => Ok(ALL_GOODS),
        Some(ALL_GOODS) => Err(format!(
            "goods id {ALL_GOODS} names no goods (ids start at 1); \
             reconcile every goods with None"
        )),
        Some(goods_id) => Ok(goods_id),
    }
}

/// The `token` BUY sends for a caller-given purchase token. 0 is
/// [`NO_TOKEN`]: on the wire it would silently be a BUY without one.
pub(crate) fn buy_token(token: u64) -> Result<u64, String> {
    match token {
        NO_TOKEN => Err(format!(
            "purchase token {NO_TOKEN} means no token (tokens are never {NO_TOKEN}); \
             buy without a token with buy()"
        )),
        token => Ok(token),
    }
}

/// Refuses a request the server would refuse as a whole frame, before
/// anything is sent: the encoder would otherwise send it, or cut a string.
pub(crate) fn check_request(request: &Request) -> Result<()> {
    match request {
        Request::AddGoods { goods, .. } if goods.name.len() > MAX_NAME_LEN => {
            Err(Error::invalid_input(format!(
                "goods name is {} bytes, over the limit of {MAX_NAME_LEN}",
                goods.name.len()
            )))
        }
        Request::Hello { token, .. } if token.len() > MAX_TOKEN_LEN => Err(Error::invalid_input(
            format!("token is over the limit of {MAX_TOKEN_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Where one request of a batch stands.
enum Slot {
    Waiting,
    Done(Reply),
    /// Its reply came but could not be used; the error is kept aside.
    Failed,
}

/// Sends `requests` with ids `first_id..` and returns their replies in
/// request order, whatever order they arrive in.
///
/// At most `window` requests are in flight at once: the server stops reading
/// a connection with too many (256 by default), and a blocking client that
/// kept writing without reading could then deadlock with it on full TCP
/// buffers. A batch that fits the window goes out in a single write; a larger
/// one is topped up whenever half the window has been answered.
///
/// A reply whose body cannot be read fails the whole batch with a protocol
/// error, but only after every other reply has been read, so the connection
/// stays in step and usable.
pub(crate) fn exchange(
    conn: &mut Connection,
    first_id: u64,
    requests: &[Request],
    window: usize,
) -> Result<Vec<Reply>> {
    conn.check_usable()?;
    requests.iter().try_for_each(check_request)?;
    let window = window.max(1);
    // A greeting has nothing of the caller's in flight: a connection-level
    // error frame is then the server's answer to it (`busy`: refused as it
    // accepted the connection), kept as it is.
    let greeting = requests.iter().all(|r| matches!(r, Request::Hello { .. }));
    let mut slots: Vec<Slot> = requests.iter().map(|_| Slot::Waiting).collect();
    let mut first_error = None;
    let (mut sent, mut answered) = (0usize, 0usize);
    while answered < requests.len() {
        if sent < requests.len() && sent - answered <= window / 2 {
            let upto = requests.len().min(answered + window);
            conn.send(first_id.wrapping_add(sent as u64), &requests[sent..upto])?;
            sent = upto;
        }
        let frame = conn.read_frame()?;
        let index = take_slot(conn, &frame, (first_id, sent), &slots, greeting)?;
        slots[index] = match check_reply(frame, requests[index].opcode()) {
            Ok(reply) => Slot::Done(reply),
            Err(err) => {
                first_error.get_or_insert(err);
                Slot::Failed
            }
        };
        answered += 1;
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    Ok(slots
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::Done(reply) => Some(reply),
            Slot::Waiting | Slot::Failed => None,
        })
        .collect())
}

/// Finds which request `frame` answers, of the `sent` sent from `first_id`.
/// Anything that makes the stream untrustworthy (the server's
/// connection-level error, an id not in flight, a second reply to one
/// request) breaks the connection; the connection-level error fails a
/// `greeting` with its status, other requests as closed.
fn take_slot(
    conn: &mut Connection,
    frame: &ReplyFrame,
    (first_id, sent): (u64, usize),
    slots: &[Slot],
    greeting: bool,
) -> Result<usize> {
    let refused = if greeting {
        connection_error(frame)
    } else {
        closed_in_flight(frame)
    };
    if let Some(err) = refused {
        return Err(conn.break_with(err));
    }
    let offset = frame.id.wrapping_sub(first_id);
    let index = match usize::try_from(offset) {
        Ok(index) if index < sent => index,
        _ => {
            return Err(conn.break_with(Error::protocol(format!(
                "reply for request id {}, which is not in flight",
                frame.id
            ))))
        }
    };
    if !matches!(slots[index], Slot::Waiting) {
        return Err(conn.break_with(Error::protocol(format!(
            "second reply for request id {}",
            frame.id
        ))));
    }
    Ok(index)
}

/// The error a server's connection-level error frame carries, if `frame`
/// is one: the server gave up on the connection's framing and closes it.
pub(crate) fn connection_error(frame: &ReplyFrame) -> Option<Error> {
    if frame.opcode != CONNECTION_ERROR {
        return None;
    }
    Some(match &frame.reply {
        Ok(Reply::Error { status, message }) => Error::server(*status, message.clone()),
        _ => Error::protocol("undecodable connection-level error from the server"),
    })
}

/// The error of the requests in flight when the server's connection-level
/// error frame came, if `frame` is one: [`ErrorKind::Closed`], whatever the
/// frame's status, which is about the connection and not about them (its
/// `bad_request` may be another caller's, on a connection many share).
/// Whether each was done is not known: the server may have answered some
/// before it gave up, and done others without a reply; a request safe to
/// send again may be sent again.
///
/// [`ErrorKind::Closed`]: crate::ErrorKind::Closed
pub(crate) fn closed_in_flight(frame: &ReplyFrame) -> Option<Error> {
    connection_error(frame).map(|err| {
        Error::closed(format!(
            "the server closed the connection ({err}); the requests still in flight may or may not have been done"
        ))
    })
}

/// The reply of `frame`, if it is a readable answer to a request of `op`.
pub(crate) fn check_reply(frame: ReplyFrame, op: Opcode) -> Result<Reply> {
    let expected = op as u8 | REPLY_BIT;
    if frame.opcode != expected {
        return Err(Error::protocol(format!(
            "reply to {op:?} (id {}) has opcode {:#04x}, expected {expected:#04x}",
            frame.id, frame.opcode
        )));
    }
    frame.reply.map_err(|e| {
        Error::protocol(format!(
            "undecodable reply to {op:?} (id {}): {e}",
            frame.id
        ))
    })
}
