//! The parts of `seckill-cli` worth testing on their own: reading what people
//! type, and showing what the server says.

pub mod input;
pub mod output;
pub mod top;
