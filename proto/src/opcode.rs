//! The command numbers.

/// A command. A reply carries its request's opcode with the high bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Hello = 0x01,
    Ping = 0x02,
    ListGoods = 0x10,
    GetGoods = 0x11,
    Buy = 0x20,
    OrderStatus = 0x21,
    Pay = 0x22,
    Cancel = 0x23,
    ListOrders = 0x24,
    /// A purchase token for BUY, for goods that require one.
    Token = 0x25,
    AddGoods = 0x40,
    Restock = 0x41,
    Stats = 0x42,
    Reconcile = 0x43,
    SaleControl = 0x44,
    /// Where a goods' units are in the stock store (capability bit 4).
    Stock = 0x45,
    /// Never sent by a client: the server uses it for a connection-level error
    /// (a frame it could not even delimit) just before it closes.
    Error = 0x7f,
}

/// The bit that marks a frame as a reply.
pub const REPLY_BIT: u8 = 0x80;

impl Opcode {
    pub fn from_u8(v: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match v {
            0x01 => Hello,
            0x02 => Ping,
            0x10 => ListGoods,
            0x11 => GetGoods,
            0x20 => Buy,
            0x21 => OrderStatus,
            0x22 => Pay,
            0x23 => Cancel,
            0x24 => ListOrders,
            0x25 => Token,
            0x40 => AddGoods,
            0x41 => Restock,
            0x42 => Stats,
            0x43 => Reconcile,
            0x44 => SaleControl,
            0x45 => Stock,
            0x7f => Error,
            _ => return None,
        })
    }

    /// Commands that need the admin token presented in HELLO.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Opcode::AddGoods
                | Opcode::Restock
                | Opcode::Stats
                | Opcode::Reconcile
                | Opcode::SaleControl
                | Opcode::Stock
        )
    }
}
