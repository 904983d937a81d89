//! The admin worker: one thread for ADD_GOODS, RESTOCK, SALE_CONTROL and
//! RECONCILE, and for the repairs of goods that a BUY found in doubt.
//!
//! Admin work may hold a goods' gate alone across store I/O (a
//! reconciliation waits up to seconds for reserved units to settle). On a
//! thread of its own it holds up no BUY worker: BUYs of that goods are
//! answered `busy` meanwhile, and BUYs of every other goods go on. One
//! thread also puts the admin commands of this server in one order.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{select, Receiver};

use crate::admin_log;
use crate::dispatch::{panicked, unless_panicked, AdminJob, Reactors};
use crate::sale::Sale;

pub struct AdminWorker {
    jobs: Receiver<AdminJob>,
    sale: Arc<Sale>,
    reactors: Reactors,
}

impl AdminWorker {
    pub fn new(jobs: Receiver<AdminJob>, sale: Arc<Sale>, reactors: Reactors) -> Self {
        AdminWorker {
            jobs,
            sale,
            reactors,
        }
    }

    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("admin-worker".into())
            .spawn(move || self.run())
    }

    /// Runs until every reactor has dropped its end of the admin channel and
    /// it is empty.
    fn run(self) {
        let repairs = self.sale.repair_requests().clone();
        loop {
            select! {
                recv(self.jobs) -> job => match job {
                    Ok(AdminJob { job, peer }) => {
                        // Admin commands are rare: a copy kept for the log costs nothing.
                        let request = job.request.clone();
                        let reply = unless_panicked("an admin request", || self.sale.serve(request))
                            .unwrap_or_else(panicked);
                        admin_log::log(peer, &job.request, &reply);
                        self.reactors.complete(job.origin, reply);
                    }
                    Err(_) => return,
                },
                recv(repairs) -> goods => {
                    if let Ok(goods) = goods {
                        unless_panicked("a repair", || self.sale.repair(goods));
                    }
                }
            }
        }
    }
}
