//! `seckill-server`: parses flags, starts the server, stops it on SIGINT or
//! SIGTERM.

use clap::Parser;
use seckill::{Config, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::parse();
    let server = Server::start(&config)?;
    // Scripts and tests wait for this line to learn the port (`--listen
    // 127.0.0.1:0` picks a free one).
    println!("seckill-server listening on {}", server.local_addr());
    if let Some(admin) = server.admin_addr() {
        println!("seckill-server admin listening on {admin}");
    }
    if let Some(metrics) = server.metrics_addr() {
        println!("seckill-server metrics listening on {metrics}");
    }

    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let shutdown = server.shutdown_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("signal {signal}: shutting down");
                shutdown.trigger();
            }
        })?;
    // An error: the server stopped because its start-up could not be
    // completed (see `seckill::startup`).
    server.wait()
}
