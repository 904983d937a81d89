//! Builds the threads, wires them together, and takes them down in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use log::{info, warn};
use mio::Poll;

use crate::admin_worker::AdminWorker;
use crate::config::{AckMode, Config};
use crate::dispatch::{Mailbox, Reactors};
use crate::drain::{Drain, DrainStop};
use crate::expiry::{Expiry, ExpiryStop};
use crate::metrics::Metrics;
use crate::reactor::admission::Admission;
use crate::reactor::rate_limit::RateLimiter;
use crate::reactor::{self, Acceptor, Handler, Limits, Reactor};
use crate::sale::Sale;
use crate::store::{
    MemoryStock, MysqlStore, OrderQueue, OrderStore, RedisStock, SqliteStore, StockStore,
};
use crate::worker::Worker;
use crate::writer::Writer;

/// Admin requests waiting for the admin worker, at most; more are `busy`.
const ADMIN_QUEUE: usize = 64;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    acceptor: JoinHandle<()>,
    reactors: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    admin: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// The `queued` mode's queue drain and its stop switch.
    drain: Option<(JoinHandle<()>, DrainStop)>,
    /// The sweep of unpaid orders.
    expiry: (ExpiryStop, JoinHandle<()>),
}

/// Asks a running server to stop; cheap to clone and send to a signal
/// handler thread.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    acceptor: Arc<mio::Waker>,
    reactors: Reactors,
}

impl Shutdown {
    /// Stop accepting, finish in-flight requests, flush replies, close.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        if let Err(e) = self.acceptor.wake().and_then(|()| self.reactors.wake_all()) {
            warn!("waking threads for shutdown: {e}");
        }
    }
}

impl Server {
    /// Opens the stores, binds the listener and starts every thread.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        config.check().map_err(anyhow::Error::msg)?;
        let metrics = Arc::new(Metrics::default());
        let (stock, orders, queue) = open_stores(config)?;
        let mut sale = Sale::open(
            stock,
            orders,
            queue.clone(),
            config.node_id,
            metrics.clone(),
        )
        .context("loading goods and stock")?;
        sale.set_token_ttl(u64::try_from(config.token_ttl.as_millis()).unwrap_or(u64::MAX));
        let sale = Arc::new(sale);
        let expiry = Expiry::new(sale.clone(), config.expiry_interval);
        let expiry = (expiry.stop_switch(), expiry.spawn()?);
        if config.admin_token.is_none() {
            warn!("no admin token set (--admin-token or SECKILL_ADMIN_TOKEN): admin commands are refused");
        }

        let listener = mio::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let admin_listener = match config.admin_listen {
            Some(admin) => {
                let l = mio::net::TcpListener::bind(admin)
                    .with_context(|| format!("binding the admin listener {admin}"))?;
                let bound = l.local_addr()?;
                if !bound.ip().is_loopback() {
                    warn!("the admin listener {bound} is not on loopback: keep it off public networks");
                }
                info!("admin commands on {bound} only");
                Some(l)
            }
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let flag = Arc::new(AtomicBool::new(false));

        // One Poll, waker and mailbox per reactor, made before any thread
        // starts, so that every thread can be given every mailbox.
        let mut polls = Vec::new();
        let mut mailboxes = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..config.reactor_count() {
            let poll = Poll::new()?;
            let (mailbox, inbox) = Mailbox::new(reactor::acceptor::waker(&poll)?);
            polls.push(poll);
            mailboxes.push(mailbox);
            inboxes.push(inbox);
        }
        let reactors = Reactors(mailboxes.clone().into());

        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(config.job_queue);
        let (admin_tx, admin_rx) = crossbeam_channel::bounded(ADMIN_QUEUE);
        let admin = AdminWorker::new(admin_rx, sale.clone(), reactors.clone()).spawn()?;
        let (orders_tx, orders_rx) = crossbeam_channel::bounded(config.batch_max * 4);
        let writer =
            Writer::new(orders_rx, sale.clone(), reactors.clone(), config.batch_max).spawn()?;
        let drain = match queue {
            Some(queue) => {
                let (drain, stop) = Drain::new(
                    sale.clone(),
                    queue,
                    config.node_id,
                    config.batch_max,
                    config.shutdown_grace,
                );
                Some((drain.spawn()?, stop))
            }
            None => None,
        };
        let workers = (0..config.workers.max(1))
            .map(|i| {
                Worker::new(
                    jobs_rx.clone(),
                    sale.clone(),
                    reactors.clone(),
                    orders_tx.clone(),
                    config.batch_max,
                )
                .spawn(i)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let limits = Limits {
            max_frame: config.max_frame,
            max_inflight: config.max_inflight.max(1),
            write_high_water: config.write_high_water,
            idle_timeout: config.idle_timeout,
            frame_timeout: config.frame_timeout,
            shutdown_grace: config.shutdown_grace,
        };
        let buy_limit = Arc::new(RateLimiter::new(config.buy_rate, config.buy_burst));
        let mut reactor_threads = Vec::new();
        for (index, ((poll, mailbox), inbox)) in
            polls.into_iter().zip(mailboxes).zip(inboxes).enumerate()
        {
            let handler = Handler {
                sale: sale.clone(),
                metrics: metrics.clone(),
                jobs: jobs_tx.clone(),
                admin_jobs: admin_tx.clone(),
                admin_token: config.admin_token.clone(),
                admin_listener: config.admin_listen.is_some(),
                buy_limit: buy_limit.clone(),
            };
            let r = Reactor::new(
                index,
                poll,
                mailbox,
                inbox,
                handler,
                limits.clone(),
                flag.clone(),
            );
            reactor_threads.push(r.spawn()?);
        }
        // From here only reactors hold job senders and only workers hold
        // order senders: when the reactors exit, the workers drain and exit,
        // then the writer does.
        drop(jobs_tx);
        drop(admin_tx);
        drop(orders_tx);

        let poll = Poll::new()?;
        let acceptor_waker = Arc::new(reactor::acceptor::waker(&poll)?);
        let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
        let acceptor = Acceptor::new(
            poll,
            listener,
            admin_listener,
            admission,
            reactors.clone(),
            metrics,
            flag.clone(),
        )?
        .spawn()?;
        info!(
            "listening on {addr} with {} reactors and {} workers",
            reactor_threads.len(),
            workers.len()
        );
        Ok(Server {
            addr,
            admin_addr,
            shutdown: Shutdown {
                flag,
                acceptor: acceptor_waker,
                reactors,
            },
            acceptor,
            reactors: reactor_threads,
            workers,
            admin,
            writer,
            drain,
            expiry,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits for the server to stop, in dependency order: no new
    /// connections, then every connection answered and closed, then the
    /// workers' queue drained, then every accepted order written (and, in
    /// the `queued` mode, the order queue drained as far as the order store
    /// allows). The stores close when the last thread drops them.
    pub fn join(self) {
        let threads = std::iter::once(self.acceptor)
            .chain(self.reactors)
            .chain(self.workers)
            .chain(std::iter::once(self.admin))
            .chain(std::iter::once(self.writer));
        for t in threads {
            join(t);
        }
        if let Some((drain, stop)) = self.drain {
            stop.trigger();
            join(drain);
        }
        let (stop, expiry) = self.expiry;
        stop.trigger();
        join(expiry);
        info!("stopped");
    }
}

fn join(t: JoinHandle<()>) {
    let name = t.thread().name().unwrap_or("?").to_owned();
    if t.join().is_err() {
        log::error!("thread {name} panicked");
    }
}

type Stores = (
    Arc<dyn StockStore>,
    Arc<dyn OrderStore>,
    Option<Arc<dyn OrderQueue>>,
);

/// The stores the flags ask for: Redis or memory for stock, MySQL or SQLite
/// for goods and orders, and in the `queued` mode the Redis order queue.
fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    let orders: Arc<dyn OrderStore> = match &config.mysql {
        Some(url) => {
            let store = MysqlStore::open(url)
                .with_context(|| format!("opening MySQL at {}", redact(url)))?;
            info!("goods and orders in MySQL at {}", redact(url));
            Arc::new(store)
        }
        None => {
            let store = SqliteStore::open(&config.data)
                .with_context(|| format!("opening {}", config.data.display()))?;
            info!("goods and orders in {}", config.data.display());
            Arc::new(store)
        }
    };
    let Some(url) = &config.redis else {
        info!("stock in process memory");
        return Ok((Arc::new(MemoryStock::new()), orders, None));
    };
    let queued = config.ack == AckMode::Queued;
    let redis = Arc::new(
        RedisStock::open(url, &config.redis_prefix, config.ack)
            .with_context(|| format!("opening Redis at {}", redact(url)))?,
    );
    info!(
        "stock in Redis at {} (keys {}*), ack mode {:?}",
        redact(url),
        config.redis_prefix,
        config.ack
    );
    let queue = queued.then(|| redis.clone() as Arc<dyn OrderQueue>);
    Ok((redis, orders, queue))
}

/// A store URL with its password (if any) hidden, for logs and errors.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<url>".into();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls_are_logged_without_passwords() {
        assert_eq!(
            redact("mysql://root:s3cret@db:3306/seckill"),
            "mysql://root:***@db:3306/seckill"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3306/seckill"),
            "mysql://root@127.0.0.1:3306/seckill"
        );
        assert_eq!(redact("redis://:p@ss@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "<url>");
    }
}
