//! Helpers shared by the test binaries of this directory.

pub mod server;
