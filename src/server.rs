//! Builds each thread role from the configuration, hands it its queues, and
//! takes the roles down in dependency order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use log::{info, warn};

use crate::admin_worker::AdminWorker;
use crate::config::{AckMode, Config};
use crate::dispatch::Reactors;
use crate::drain::Drain;
use crate::expiry::Expiry;
use crate::metrics::Metrics;
use crate::open_files;
use crate::reactor::{Acceptor, Handler, Listeners, ReactorSet};
use crate::sale::Sale;
use crate::stop::Stop;
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
    /// The acceptor and the reactors: they stop at [`Shutdown::trigger`].
    front: Vec<JoinHandle<()>>,
    /// The workers, the admin worker and the order writer: they stop when
    /// the front is gone and their queues are empty.
    pipeline: Vec<JoinHandle<()>>,
    /// The expiry sweep and (queued mode) the queue drain: stopped last.
    back: Vec<JoinHandle<()>>,
    back_stop: Stop,
}

/// Asks a running server to stop; cheap to clone and send to a signal
/// handler thread.
#[derive(Clone)]
pub struct Shutdown {
    stop: Stop,
    acceptor: Arc<mio::Waker>,
    reactors: Reactors,
}

impl Shutdown {
    /// Stop accepting, finish in-flight requests, flush replies, close.
    pub fn trigger(&self) {
        self.stop.trigger();
        if let Err(e) = self.acceptor.wake().and_then(|()| self.reactors.wake_all()) {
            warn!("waking threads for shutdown: {e}");
        }
    }
}

impl Server {
    /// Opens the stores, binds the listeners and starts every thread role,
    /// each from the configuration, from the back of the pipeline to the
    /// front: nothing is accepted before there is someone to serve it.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        config.check().map_err(anyhow::Error::msg)?;
        let config = &open_files::fit_connections(config);
        let metrics = Arc::new(Metrics::default());
        let sale = open_sale(config, &metrics)?;
        let listeners = Listeners::bind(config)?;
        let (reactor_set, reactors) = ReactorSet::new(config.reactor_count())?;
        let (front_stop, back_stop) = (Stop::new(), Stop::new());
        let (jobs, jobs_rx) = crossbeam_channel::bounded(config.job_queue);
        let (admin_jobs, admin_rx) = crossbeam_channel::bounded(ADMIN_QUEUE);
        let (orders, orders_rx) = crossbeam_channel::bounded(config.batch_max * 4);

        let mut back = vec![Expiry::new(config, sale.clone(), back_stop.clone()).spawn()?];
        if let Some(queue) = sale.queue() {
            back.push(Drain::new(config, sale.clone(), queue, back_stop.clone()).spawn()?);
        }
        let mut pipeline = vec![
            Writer::new(config, orders_rx, sale.clone(), reactors.clone()).spawn()?,
            AdminWorker::new(admin_rx, sale.clone(), reactors.clone()).spawn()?,
        ];
        pipeline.extend(Worker::spawn_pool(
            config, &jobs_rx, &orders, &sale, &reactors,
        )?);
        // From here only reactors hold job senders and only workers hold the
        // order sender: when the reactors exit, the workers drain and exit,
        // then the writer does.
        drop(orders);
        let handler = Handler::new(config, sale, metrics.clone(), jobs, admin_jobs);
        let mut front = reactor_set.spawn(config, handler, &front_stop)?;

        let (addr, admin_addr) = (listeners.local_addr()?, listeners.admin_addr()?);
        let acceptor = Acceptor::new(
            config,
            listeners,
            reactors.clone(),
            metrics,
            front_stop.clone(),
        )?;
        let shutdown = Shutdown {
            stop: front_stop,
            acceptor: acceptor.waker(),
            reactors,
        };
        front.insert(0, acceptor.spawn()?);
        info!(
            "listening on {addr} with {} reactors and {} workers",
            front.len() - 1,
            pipeline.len() - 2
        );
        if config.admin_token.is_none() {
            warn!("no admin token set (--admin-token or SECKILL_ADMIN_TOKEN): admin commands are refused");
        }
        Ok(Server {
            addr,
            admin_addr,
            shutdown,
            front,
            pipeline,
            back,
            back_stop,
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
    /// workers' queues drained, then every accepted order written (and, in
    /// the `queued` mode, the order queue drained as far as the order store
    /// allows). The stores close when the last thread drops them.
    pub fn join(self) {
        self.front.into_iter().chain(self.pipeline).for_each(join);
        self.back_stop.trigger();
        self.back.into_iter().for_each(join);
        info!("stopped");
    }
}

fn join(t: JoinHandle<()>) {
    let name = t.thread().name().unwrap_or("?").to_owned();
    if t.join().is_err() {
        log::error!("thread {name} panicked");
    }
}

/// The sale on the stores the flags ask for, loaded and reconciled.
fn open_sale(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Sale>> {
    let (stock, orders, queue) = open_stores(config)?;
    let mut sale = Sale::open(stock, orders, queue, config.node_id, metrics.clone())
        .context("loading goods and stock")?;
    sale.set_token_ttl(u64::try_from(config.token_ttl.as_millis()).unwrap_or(u64::MAX));
    Ok(Arc::new(sale))
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
