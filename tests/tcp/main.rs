//! The server over real TCP on loopback: the binary is started on an
//! ephemeral port with its own data file, as a deployment would run it.

mod harness;

mod admin;
mod controls;
mod crash;
mod failover;
mod faults;
mod flash_sale;
mod galera;
mod hostile;
mod lifecycle;
mod malformed;
mod metrics;
mod nodes;
mod ops;
mod pipelining;
mod redis_cluster;
mod request_ids;
mod several;
mod shutdown;
mod startup;
mod stores;
mod versions;
