//! Whether the server serves, and telling systemd so.
//!
//! Ready means listening with the goods loaded and reconciled: until then
//! the server answers `busy` (its stores may not be up yet, `startup.rs`),
//! and a service manager that started the units after it on its say-so
//! would send them a server that cannot sell.

use std::net::SocketAddr;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::startup::SaleSlot;

/// How often [`notify_when_ready`] looks. Start-up fills the sale's slot
/// once and tells no one; looking this often costs nothing, and keeps
/// start-up unaware of service managers.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Whether the server is ready; cheap to clone.
#[derive(Clone)]
pub struct Readiness(SaleSlot);

impl Readiness {
    pub(crate) fn new(slot: SaleSlot) -> Readiness {
        Readiness(slot)
    }

    /// Listening, with the goods loaded and reconciled.
    pub fn is_ready(&self) -> bool {
        self.0.get().is_some()
    }
}

/// Tells the service manager `READY=1` once the server is ready, from a
/// thread of its own, and meanwhile what it waits for (`STATUS=`). Without
/// `NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) each
/// message is dropped and this costs one look per tick until ready.
pub fn notify_when_ready(
    readiness: Readiness,
    addr: SocketAddr,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("sd-notify".into())
        .spawn(move || {
            if !readiness.is_ready() {
                tell(&[NotifyState::Status(
                    "listening; waiting for the stores to load the goods",
                )]);
            }
            while !readiness.is_ready() {
                thread::sleep(LOOK_EVERY);
            }
            let status = format!("serving on {addr}");
            tell(&[NotifyState::Ready, NotifyState::Status(&status)]);
        })
}

/// Tells the service manager the server is stopping (it drains for up to
/// the shutdown grace).
pub fn notify_stopping() {
    tell(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

fn tell(states: &[NotifyState<'_>]) {
    // A service manager that cannot be told is no reason to stop serving.
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("telling the service manager {states:?}: {e}");
    }
}
