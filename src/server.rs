//! Builds each thread role from the configuration, hands it its queues, and
//! takes the roles down in dependency order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use log::{error, info, warn};

use crate::admin_worker::AdminWorker;
use crate::config::{AckMode, Config};
use crate::dispatch::{AdminJob, Job, Reactors};
use crate::drain::Drain;
use crate::expiry::Expiry;
use crate::metrics::Metrics;
use crate::open_files;
use crate::reactor::{Acceptor, Handler, Listeners, ReactorSet};
use crate::readiness::Readiness;
use crate::redact;
use crate::sale::{Queues, Sale};
use crate::startup::{self, Progress, SaleSlot, Started, Startup, Stores};
use crate::stop::Stop;
use crate::store::{
    MemoryStock, MysqlStore, OrderQueue, OrderStore, RedisStock, Replication, SqliteStore,
};
use crate::telemetry::{MetricsListener, MetricsSocket, Sources};
use crate::worker::{Pending, Worker};
use crate::writer::Writer;

/// Admin requests waiting for the admin worker, at most; more are `busy`.
const ADMIN_QUEUE: usize = 64;

/// An admin token shorter than this is warned about at start: a server
/// refuses ten wrong ones a minute per address, no more, so a short one
/// could be guessed from many addresses.
const MIN_STRONG_TOKEN: usize = 16;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    /// The reactors and the acceptors: they stop at [`Shutdown::trigger`].
    front: Vec<JoinHandle<()>>,
    /// Start-up still going on in the background, if the stores were not
    /// all up at start; it hands over the roles it started.
    startup: Option<JoinHandle<Started>>,
    /// The roles started at start: the workers, the admin worker and the
    /// order writer (they stop when the front is gone and their queues are
    /// empty), then the expiry sweep, the queue drain and the node lease
    /// (stopped last).
    started: Started,
    back_stop: Stop,
    /// Filled once the goods are loaded: what readiness looks at.
    sale: SaleSlot,
    /// `--metrics-listen`: serves until the rest has stopped, so that a
    /// drain can be watched to its end.
    metrics: Option<MetricsListener>,
}

/// Asks a running server to stop; cheap to clone and send to a signal
/// handler thread.
#[derive(Clone)]
pub struct Shutdown {
    stop: Stop,
    acceptors: Vec<Arc<mio::Waker>>,
    reactors: Reactors,
}

impl Shutdown {
    /// Stop accepting, finish in-flight requests, flush replies, close.
    pub fn trigger(&self) {
        self.stop.trigger();
        let woken = self
            .acceptors
            .iter()
            .try_for_each(|a| a.wake())
            .and_then(|()| self.reactors.wake_all());
        if let Err(e) = woken {
            warn!("waking threads for shutdown: {e}");
        }
    }
}

/// The roles that serve from the open sale, built once it is open: at
/// start, or by the background start-up once the stores are up.
struct Roles {
    config: Config,
    jobs: Receiver<Job>,
    admin_jobs: Receiver<AdminJob>,
    /// Reserved orders from the workers to the order writer.
    orders: (Sender<Pending>, Receiver<Pending>),
    reactors: Reactors,
    back_stop: Stop,
}

impl Roles {
    /// Starts them from the back of the pipeline to the front, each thread
    /// put in `started` as it starts (so that a failure part of the way
    /// leaves them to be stopped with the rest).
    fn start(self, sale: &Arc<Sale>, started: &mut Started) -> std::io::Result<()> {
        let config = &self.config;
        let (orders, orders_rx) = self.orders;
        started
            .back
            .push(Expiry::new(config, sale.clone(), self.back_stop.clone()).spawn()?);
        if let Some(queue) = sale.queue() {
            let drain = Drain::new(config, sale.clone(), queue, self.back_stop.clone());
            started.back.push(drain.spawn()?);
        }
        let writer = Writer::new(config, orders_rx, sale.clone(), self.reactors.clone());
        started.pipeline.push(writer.spawn()?);
        let admin = AdminWorker::new(self.admin_jobs, sale.clone(), self.reactors.clone());
        started.pipeline.push(admin.spawn()?);
        let before = started.pipeline.len();
        Worker::spawn_pool(
            config,
            &self.jobs,
            &orders,
            sale,
            &self.reactors,
            &mut started.pipeline,
        )?;
        info!("serving with {} workers", started.pipeline.len() - before);
        // From here only reactors hold job senders and only workers hold the
        // order sender: when the reactors exit, the workers drain and exit,
        // then the writer does.
        drop(orders);
        Ok(())
    }
}

impl Server {
    /// Opens the stores, binds the listeners and starts every thread role,
    /// each from the configuration, from the back of the pipeline to the
    /// front: nothing is accepted before there is someone to serve it.
    ///
    /// A store that does not answer yet does not stop the start: the server
    /// listens, answers `busy`, and its start-up goes on in the background
    /// until the stores are up (`startup.rs`). It fails on what waiting will
    /// not fix: a bad flag or URL, a data file another server holds, a node
    /// id asked for that a live server holds.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        config.check().map_err(anyhow::Error::msg)?;
        if let Some(token) = &config.admin_token {
            // Its length is not logged: it would tell a reader of the log
            // how much of a weak token is left to guess.
            if token.expose().chars().count() < MIN_STRONG_TOKEN {
                log::warn!(
                    "the admin token is shorter than {MIN_STRONG_TOKEN} characters: a short one \
                     can be guessed; use {MIN_STRONG_TOKEN} or more random ones (e.g. openssl \
                     rand -hex 16)"
                );
            }
        }
        let config = &open_files::fit_connections(config);
        let metrics = Arc::new(Metrics::default());
        // Bound before the stores are opened: a port that is taken must
        // not leave a new, empty SQLite file behind. Nothing is accepted
        // until the acceptor runs, below.
        let listeners = Listeners::bind(config)?;
        let metrics_socket = config.metrics_listen.map(MetricsSocket::bind).transpose()?;
        let stores = open_stores(config)?;
        let (addr, admin_addr) = (listeners.local_addr()?, listeners.admin_addr()?);
        let (front_stop, back_stop) = (Stop::new(), Stop::new());
        let mut startup = Startup::new(
            config,
            stores,
            &metrics,
            &format!("listening on {addr}"),
            back_stop.clone(),
        )?;
        let first = startup.advance();
        // A node id may be leased already: released if anything fails from
        // here until the server value below takes the lease's thread (after
        // which a failed start stops it as any server's stop does), this
        // first try included.
        let lease = LeaseUntilBuilt {
            stop: back_stop.clone(),
            threads: startup.take_threads(),
        };
        let first = first?;
        let (reactor_set, reactors) = ReactorSet::new(config.reactor_count())?;
        let (jobs, jobs_rx) = crossbeam_channel::bounded(config.job_queue);
        let (admin_jobs, admin_rx) = crossbeam_channel::bounded(ADMIN_QUEUE);
        let (orders, orders_rx) = crossbeam_channel::bounded(config.batch_max * 4);
        let telemetry = Sources {
            metrics: metrics.clone(),
            sale: SaleSlot::default(),
            jobs: jobs_rx.clone(),
            stop: front_stop.clone(),
        };
        let roles = Roles {
            config: config.clone(),
            jobs: jobs_rx,
            admin_jobs: admin_rx,
            orders: (orders, orders_rx),
            reactors: reactors.clone(),
            back_stop: back_stop.clone(),
        };
        let slot = telemetry.sale.clone();
        // The server as far as it is built: should a step below fail, it is
        // stopped and joined as any server is (the workers drain, the order
        // writer writes what was accepted, the node id is released last),
        // rather than leave its threads running behind the error, holding
        // the stores and the data file's lock.
        let mut server = Server {
            addr,
            admin_addr,
            shutdown: Shutdown {
                stop: front_stop.clone(),
                acceptors: Vec::new(),
                reactors: reactors.clone(),
            },
            front: Vec::new(),
            startup: None,
            started: Started {
                back: lease.built(),
                ..Started::default()
            },
            back_stop: back_stop.clone(),
            sale: slot.clone(),
            metrics: None,
        };
        let built = (|| -> anyhow::Result<()> {
            let later = match first {
                Progress::Ready(sale) => {
                    roles.start(&sale, &mut server.started)?;
                    slot.fill(sale);
                    None
                }
                Progress::Waiting => Some((startup, roles)),
            };
            let handler = Handler::new(config, slot.clone(), metrics.clone(), jobs, admin_jobs);
            reactor_set.spawn(config, handler, &front_stop, &mut server.front)?;
            let acceptors = Acceptor::set(
                config,
                listeners,
                reactors.clone(),
                metrics,
                front_stop.clone(),
            )?;
            server.shutdown.acceptors = acceptors.iter().map(Acceptor::waker).collect();
            let reactor_count = server.front.len();
            if let Some(socket) = metrics_socket {
                let listener = socket.serve(telemetry)?;
                info!(
                    "metrics, health and readiness on http://{}",
                    listener.local_addr()
                );
                server.metrics = Some(listener);
            }
            // A node id leased later is leased by this thread, and released
            // by the server's stop.
            if let Some((startup, roles)) = later {
                server.startup = Some(startup::carry_on(
                    startup,
                    move |sale, started| roles.start(sale, started),
                    slot.clone(),
                    front_stop.clone(),
                    server.shutdown.clone(),
                )?);
            }
            #[cfg(test)]
            if tests::FAIL_BEFORE_ACCEPTORS.with(std::cell::Cell::take) {
                anyhow::bail!("an acceptor's thread could not be spawned (a test's)");
            }
            for acceptor in acceptors {
                server.front.push(acceptor.spawn()?);
            }
            info!(
                "listening on {addr} with {reactor_count} reactors and {} acceptors",
                config.acceptors
            );
            Ok(())
        })();
        if let Err(e) = built {
            server.shutdown.trigger();
            if let Err(stopped) = server.wait() {
                warn!("stopping after a failed start: {stopped:#}");
            }
            return Err(e);
        }
        if config.admin_token.is_none() {
            warn!("no admin token set (--admin-token or SECKILL_ADMIN_TOKEN): admin commands are refused");
        }
        Ok(server)
    }

    /// The `--metrics-listen` listener's address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Whether it serves yet (listening, goods loaded), for a service
    /// manager.
    pub fn readiness(&self) -> Readiness {
        Readiness::new(self.sale.clone())
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits for the server to stop, in dependency order: no new
    /// connections, then every connection answered and closed, then the
    /// workers' queues drained, then every accepted order written (and, in
    /// the `queued` mode, the order queue drained as far as the order store
    /// allows, for up to `--shutdown-grace`), and last the node id
    /// released. The stores close when the last thread drops them.
    pub fn join(self) {
        if let Err(e) = self.wait() {
            error!("{e:#}");
        }
    }

    /// [`join`](Self::join), saying why the server stopped if it was not
    /// asked to: its start-up met what waiting will not fix.
    pub fn wait(self) -> anyhow::Result<()> {
        self.front.into_iter().for_each(join);
        let mut started = self.started;
        if let Some(startup) = self.startup {
            match startup.join() {
                Ok(later) => {
                    started.pipeline.extend(later.pipeline);
                    started.back.extend(later.back);
                    started.failed = later.failed;
                }
                Err(_) => error!("thread startup panicked"),
            }
        }
        started.pipeline.into_iter().for_each(join);
        self.back_stop.trigger();
        started.back.into_iter().for_each(join);
        if let Some(metrics) = self.metrics {
            metrics.stop();
        }
        info!("stopped");
        started.failed.map_or(Ok(()), Err)
    }
}

/// The node lease's thread from start-up's first try until the server is
/// built (its threads then go with the server's, which a failed start
/// stops as any server): should a step of [`Server::start`] in between
/// fail, dropping this stops the thread and waits for it to release the
/// id. (It stayed leased until the lease ran out, and a restart asking for
/// it with `--node-id` was refused meanwhile.)
struct LeaseUntilBuilt {
    stop: Stop,
    threads: Vec<JoinHandle<()>>,
}

impl LeaseUntilBuilt {
    /// Built: the threads go with the server's, stopped with them.
    fn built(mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.threads)
    }
}

impl Drop for LeaseUntilBuilt {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop.trigger();
            self.threads.drain(..).for_each(join);
        }
    }
}

fn join(t: JoinHandle<()>) {
    let name = t.thread().name().unwrap_or("?").to_owned();
    if t.join().is_err() {
        log::error!("thread {name} panicked");
    }
}

/// The stores the flags ask for: Redis or memory for stock, MySQL or SQLite
/// for goods and orders, and in the `queued` mode the Redis order queue.
/// Nothing is asked of MySQL or Redis yet (start-up does); the SQLite file
/// is opened, and held by this process alone.
fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    let (orders, nodes, mysql): (Arc<dyn OrderStore>, _, _) = match &config.mysql {
        Some(url) => {
            let store = Arc::new(
                MysqlStore::new(url).with_context(|| format!("MySQL at {}", redact::mysql(url)))?,
            );
            info!("goods and orders in MySQL at {}", redact::mysql(url));
            (store.clone(), store.clone() as _, Some(store))
        }
        None => {
            let store = Arc::new(
                SqliteStore::open_exclusive(&config.data)
                    .with_context(|| format!("opening {}", config.data.display()))?,
            );
            info!("goods and orders in {}", config.data.display());
            (store.clone(), store as _, None)
        }
    };
    let queued = config.ack == AckMode::Queued;
    let redis = match (&config.redis, &config.redis_cluster) {
        (Some(url), _) => {
            let store = RedisStock::new(url, &config.redis_prefix, config.ack)
                .with_context(|| format!("Redis at {}", redact::url(url)))?;
            info!("stock in Redis at {}", redact::url(url));
            store
        }
        (None, Some(seeds)) => {
            let shown: Vec<String> = seeds.iter().map(|s| redact::seed(s)).collect();
            let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
            let store = RedisStock::new_cluster(&seeds, &config.redis_prefix, config.ack)
                .with_context(|| format!("Redis Cluster at {}", shown.join(",")))?;
            info!("stock in the Redis Cluster at {}", shown.join(","));
            store
        }
        (None, None) => {
            info!("stock in process memory");
            if config.mysql.is_some() {
                // Each server would sell from stock of its own: correct (the
                // order store fences them) but every reconciliation of one
                // would leave the others busy in turn.
                warn!("stock in memory with a MySQL order store: run one server per order store, or give them --redis");
            }
            return Ok(Stores {
                stock: Arc::new(MemoryStock::new()),
                orders,
                queues: Queues::None,
                nodes,
                mysql,
            });
        }
    };
    info!(
        "Redis keys {}*, ack mode {:?}",
        config.redis_prefix, config.ack
    );
    let redis = if config.redis_wait > 0 {
        info!(
            "each stock change waits for {} replica(s), at most {:?}",
            config.redis_wait, config.redis_wait_timeout
        );
        redis.with_replication(Replication {
            replicas: config.redis_wait,
            timeout: config.redis_wait_timeout,
        })
    } else {
        redis
    };
    let redis = Arc::new(redis);
    let queue = redis.clone() as Arc<dyn OrderQueue>;
    let queues = match queued {
        true => Queues::Acked(queue),
        false => Queues::Leftover(queue),
    };
    Ok(Stores {
        stock: redis,
        orders,
        queues,
        nodes,
        mysql,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::lease::NodeLease;
    use crate::sale::OrderNumbers;

    thread_local! {
        /// Fails the next [`Server::start`] on this thread once everything
        /// but the acceptors runs: as an acceptor's thread that could not
        /// be spawned would.
        pub(super) static FAIL_BEFORE_ACCEPTORS: std::cell::Cell<bool> =
            const { std::cell::Cell::new(false) };
    }

    /// A start that fails once its threads run stops and joins them: none
    /// is left holding the stores, so a server started again on the same
    /// data file (which one server holds at a time) starts.
    #[test]
    fn a_start_that_fails_once_its_threads_run_leaves_none_behind() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("s.db");
        let config = Config::parse_from([
            "seckill-server",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
        ]);
        FAIL_BEFORE_ACCEPTORS.with(|f| f.set(true));
        let failed = Server::start(&config).err().expect("the start fails");
        assert!(failed.to_string().contains("a test's"), "{failed:#}");
        let server = Server::start(&config).expect("the data file is free again");
        server.shutdown_handle().trigger();
        server.wait().unwrap();
    }

    /// A server whose start fails after its node id was leased gives the id
    /// back on the way out: the next one asking for it gets it at once.
    #[test]
    fn a_start_that_fails_after_the_lease_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(SqliteStore::open(&dir.path().join("nodes.db")).unwrap());
        let config = Config::parse_from(["seckill-server", "--node-id", "7", "--node-lease", "1h"]);
        let leased = |registry: &Arc<SqliteStore>| {
            NodeLease::new(&config, registry.clone(), OrderNumbers::ungranted(), "test").unwrap()
        };
        let mut first = leased(&registry);
        assert_eq!(first.acquire().unwrap(), 7);
        let stop = Stop::new();
        let guard = LeaseUntilBuilt {
            stop: stop.clone(),
            threads: vec![first.spawn(stop).unwrap()],
        };
        assert!(leased(&registry).acquire().is_err(), "held meanwhile");
        drop(guard); // as by a `?` after it
        assert_eq!(leased(&registry).acquire().unwrap(), 7);
    }
}
