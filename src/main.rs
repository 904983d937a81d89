//! `seckill-server`: reads its configuration, starts the server, tells
//! systemd when it is ready, stops it on SIGINT or SIGTERM, and keeps
//! serving through SIGHUP.

use seckill::readiness::{notify_stopping, notify_when_ready};
use seckill::{Config, ConfigError, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Before anything that takes time: from here a SIGHUP (a closed
    // terminal, a `systemctl reload`) no longer kills the process, and a
    // SIGTERM waits for the server it stops.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let loaded = match Config::load() {
        Ok(loaded) => loaded,
        // --help, --version and flag errors, as clap prints them.
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    log::info!("seckill-server {}: {}", seckill::VERSION, loaded.effective);
    let server = Server::start(&loaded.config)?;
    // Scripts and tests wait for this line to learn the port (`--listen
    // 127.0.0.1:0` picks a free one).
    println!("seckill-server listening on {}", server.local_addr());
    if let Some(admin) = server.admin_addr() {
        println!("seckill-server admin listening on {admin}");
    }
    if let Some(metrics) = server.metrics_addr() {
        println!("seckill-server metrics listening on {metrics}");
    }
    notify_when_ready(server.readiness(), server.local_addr())?;

    let shutdown = server.shutdown_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    // The configuration (flags, environment, file) is read
                    // once, at start: a reload that changed only some of
                    // it would leave a server no file describes.
                    log::info!(
                        "SIGHUP: nothing to reload (the configuration is read at start; restart to change it); still serving"
                    );
                    continue;
                }
                log::info!("signal {signal}: shutting down");
                notify_stopping();
                shutdown.trigger();
                return;
            }
        })?;
    // An error: the server stopped because its start-up could not be
    // completed (see `seckill::startup`).
    server.wait()
}
