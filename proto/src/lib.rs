//! The seckill wire protocol.
//!
//! A pure codec shared by the server, the client and the bench: it never
//! touches a socket. `proto/PROTOCOL.md` specifies every byte; this crate is
//! its reference implementation.
//!
//! ```text
//!  0      4       5                 13
//!  +------+-------+-----------------+-------------------------------+
//!  | len  | opcode | request id     | body (len - 9 bytes)          |
//!  | u32  | u8     | u64            | requests: fields of the command|
//!  |  BE  |        |  BE            | replies:  status u8, fields    |
//!  +------+-------+-----------------+-------------------------------+
//! ```
//!
//! Decoding is two steps, so that a server can answer a bad request by its id:
//! [`Frame::parse`] finds one whole frame in a buffer (or says it is
//! incomplete, too large or too short, before anything is allocated), then
//! [`Request::decode`] or [`Reply::decode`] reads the body.
//!
//! ```
//! use bytes::BytesMut;
//! use seckill_proto::{Frame, Request, RequestId, MAX_REQUEST_FRAME};
//!
//! let mut buf = BytesMut::new();
//! // The same id on every retry of this BUY: it names the purchase.
//! let request_id = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
//! let buy = Request::Buy { user_id: 7, goods_id: 1, token: 0, request_id };
//! buy.encode(42, &mut buf);
//! let (frame, used) = Frame::parse(&buf, MAX_REQUEST_FRAME).unwrap();
//! assert_eq!(used, buf.len());
//! assert_eq!(frame.id, 42);
//! assert_eq!(Request::decode(&frame).unwrap(), buy);
//! ```

mod frame;
mod hello;
mod opcode;
mod reply;
mod request;
mod request_id;
mod status;
mod types;
mod wire;

pub use frame::{Frame, FrameError, HEADER_LEN, LEN_PREFIX};
pub use hello::{Capabilities, ServerInfo, MIN_VERSION, SERVER_INFO_LEN};
pub use opcode::Opcode;
pub use reply::Reply;
pub use request::{
    Request, ALL_GOODS, BUY_LEN, BUY_WITH_ID_LEN, MAX_NAME_LEN, MAX_TOKEN_LEN, NO_TOKEN,
};
pub use request_id::{ParseRequestIdError, RequestId};
pub use status::Status;
pub use types::{
    Drift, Goods, GoodsState, NewGoods, Order, OrderState, SaleAction, SaleRules, Stat, StockParts,
    DEFAULT_PAY_WINDOW_MS,
};
pub use wire::BodyError;

/// The newest protocol version this crate speaks, sent in HELLO. It speaks
/// every version from [`MIN_VERSION`] to this one (PROTOCOL.md, section 12).
pub const VERSION: u16 = 2;

/// The default largest request frame a server accepts (the length field's
/// value, so header and body). Requests are small; this leaves room.
pub const MAX_REQUEST_FRAME: u32 = 64 * 1024;

/// The default largest reply frame a client accepts. A goods list can be
/// long; anything past this is a broken or hostile peer.
pub const MAX_REPLY_FRAME: u32 = 16 * 1024 * 1024;

/// The most goods a server holds: LIST_GOODS answers every goods in one
/// reply, whose Goods records are at most 253 bytes each, so that this many
/// fit [`MAX_REPLY_FRAME`] with room to spare (PROTOCOL.md, section 9).
/// ADD_GOODS past it is `bad_request`.
pub const MAX_GOODS: usize = 60_000;
