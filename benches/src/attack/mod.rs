//! The attack scenario: what a normal client sees while the server is under
//! each kind of hostile traffic (SECURITY.md, threat model).
//!
//! ```text
//!   baseline ─▶ random-bytes ─▶ truncated ─▶ … ─▶ million-pipelined     one --phase each
//!                    │
//!                    ├─ 1. the attack's threads start (hostile.rs) and open their connections
//!                    ├─ 2. the normal client runs: engine::run, open loop at --rate over
//!                    │     --connections, GET_GOODS / LIST_GOODS / BUY by new users,
//!                    │     each request timed from its scheduled instant (HDR histogram)
//!                    ├─ 3. the server's VmRSS is read (--server-pid)
//!                    └─ 4. the attack stops: its threads close their connections and end;
//!                          a short pause lets the server see them go
//!
//!   report.rs: one row per phase; the run fails only on what a healthy server would not
//!   cause the normal client (errors, broken connections, requests never answered)
//! ```
//!
//! The normal client connects afresh in each phase (the engine greets its
//! connections before its clock starts), so a phase's numbers are its own.

pub(crate) mod hostile;
mod report;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use hostile::AttackCounts;
pub use report::{AttackReport, PhaseReport};

use crate::cli::{self, AttackKind, Common};
use crate::engine::{self, Plan, Target};
use crate::error::Error;
use crate::report::{Header, Output, Report};
use crate::scenario::{add_goods, admin_token, plan, resolve_all};
use crate::workload::Shopper;
use hostile::{Aim, Ctx};

/// Stock of the goods the normal client buys: never sold out in a run.
const STOCK: u32 = 2_000_000_000;
/// The normal client's load unless told: modest, fixed.
const DEFAULT_RATE: f64 = 2_000.0;
const DEFAULT_CONNECTIONS: usize = 10;
/// Connections of the unknown-opcode attack (each read by a thread of its
/// own).
const PIPELINERS: usize = 4;
/// Open files kept for everything but the attack's connections.
const RESERVED_FILES: u64 = 256;
/// The most this process asks for (Linux refuses an unlimited RLIMIT_NOFILE).
const MAX_OPEN_FILES: u64 = 1 << 20;
/// How long an attack may take to open its connections; the normal client
/// then starts anyway.
const RAMP_MAX: Duration = Duration::from_secs(30);
/// The pause after an attack's connections are closed, before the next
/// phase (at most a phase).
const SETTLE: Duration = Duration::from_millis(500);

/// One phase of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The normal client alone.
    Baseline,
    Attack(AttackKind),
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Attack(kind) => kind.name(),
        }
    }
}

/// The phases to run: the baseline, then each attack chosen (every one if
/// none is) once, in the order of [`AttackKind::ALL`].
pub fn phase_plan(chosen: &[AttackKind]) -> Vec<Phase> {
    let attacks = AttackKind::ALL
        .into_iter()
        .filter(|kind| chosen.is_empty() || chosen.contains(kind));
    std::iter::once(Phase::Baseline)
        .chain(attacks.map(Phase::Attack))
        .collect()
}

/// How many threads an attack runs and connections it keeps open at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crew {
    pub threads: usize,
    pub connections: usize,
}

/// The crew of attack `kind` as the flags size it.
pub fn crew(kind: AttackKind, args: &cli::Attack) -> Crew {
    let each = |n: usize| Crew {
        threads: n.max(1),
        connections: n.max(1),
    };
    let holder = |n: usize| Crew {
        threads: 1,
        connections: n.max(1),
    };
    match kind {
        AttackKind::RandomBytes
        | AttackKind::HugeLength
        | AttackKind::ZeroLength
        | AttackKind::WrongVersion => each(args.attackers),
        AttackKind::Truncated => holder(args.slow_connections),
        AttackKind::Idle10k => holder(args.idle_connections),
        AttackKind::UnknownOpcode => each(PIPELINERS),
        AttackKind::NoRead => each(args.no_readers),
        AttackKind::UnreadGoods => holder(args.unread_connections),
        AttackKind::MillionPipelined => each(1),
    }
}

/// `crew` cut down to the files this process may open (`open_files`, with
/// `normal` connections of the normal client beside it), and why if it was.
pub fn fit(crew: Crew, open_files: Option<u64>, normal: usize) -> (Crew, Option<String>) {
    let Some(limit) = open_files else {
        return (crew, None);
    };
    let budget = limit.saturating_sub(RESERVED_FILES + normal as u64).max(1) as usize;
    if crew.connections <= budget {
        return (crew, None);
    }
    let fitted = Crew {
        threads: crew.threads.min(budget),
        connections: budget,
    };
    let why = format!(
        "only {budget} of {} connections: this process may open {limit} files (RLIMIT_NOFILE; raise the hard limit)",
        crew.connections
    );
    (fitted, Some(why))
}

/// Everything the phases share.
struct Run<'a> {
    args: &'a cli::Attack,
    common: Common,
    plan: Plan,
    addr: SocketAddr,
    target: Target,
    shopper: Shopper,
    goods: u64,
    open_files: Option<u64>,
}

/// Runs the baseline and the attacks.
pub fn run(common: &Common, args: &cli::Attack) -> Result<Output, Error> {
    let open_files = raise_open_files_limit();
    if let Some(pid) = common.server_pid {
        rss_kib(pid).ok_or_else(|| {
            Error::Setup(format!(
                "--server-pid {pid}: cannot read /proc/{pid}/status (no such process?)"
            ))
        })?;
    }
    // The attack measures one server (its memory, its refusals, what its
    // clients see), next to the normal client.
    let addr = match resolve_all(&common.addr)?[..] {
        [one] => one,
        _ => {
            return Err(Error::Setup(
                "attack measures one server: give --addr a single address".into(),
            ))
        }
    };
    if let Some(from) = args.attack_from.filter(|f| f.is_ipv4() != addr.is_ipv4()) {
        return Err(Error::Setup(format!(
            "--attack-from {from} cannot connect to {addr}: give an address of the same family"
        )));
    }
    let token = admin_token(common, "attack")?;
    let goods = add_goods(common, token, "attack", STOCK)?.id;
    let mut normal = common.clone();
    normal.rate.get_or_insert(DEFAULT_RATE);
    normal.connections.get_or_insert(DEFAULT_CONNECTIONS);
    let run = Run {
        args,
        plan: plan(&normal, Some(args.phase), false),
        common: normal,
        addr,
        target: Target::Seckill {
            addrs: vec![addr],
            request_ids: crate::scenario::request_ids(common)?,
        },
        shopper: Shopper::new(goods, 1),
        goods,
        open_files,
    };
    let phases = phase_plan(&args.attacks)
        .into_iter()
        .map(|phase| run.phase(phase))
        .collect();
    let mut report = AttackReport {
        scenario: "attack".into(),
        addr: addr.to_string(),
        rate: run.common.rate.unwrap_or(DEFAULT_RATE),
        connections: run.plan.connections,
        phase_s: args.phase.as_secs_f64(),
        server_pid: common.server_pid,
        open_files_limit: open_files,
        goods,
        phases,
        passed: false,
    };
    report.conclude();
    Ok(Output::Attack(Box::new(report)))
}

/// Sets the stop flag however the phase ends, so that no attacker thread
/// outlives it.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Run<'_> {
    /// One phase: the attack (if any) up, the normal client's run, the
    /// server's memory, the attack down.
    fn phase(&self, phase: Phase) -> PhaseReport {
        let (crew, mut notes) = match phase {
            Phase::Baseline => (Crew::default(), Vec::new()),
            Phase::Attack(kind) => {
                let (crew, why) = fit(
                    crew(kind, self.args),
                    self.open_files,
                    self.plan.connections,
                );
                (crew, why.into_iter().collect())
            }
        };
        if std::io::stderr().is_terminal() {
            eprintln!(
                "── {} ({} attacking connections) ──",
                phase.name(),
                crew.connections
            );
        }
        let addr = self.addr;
        let ctx = Ctx::new(Aim {
            addr,
            goods: self.goods,
            seed: self.common.seed,
            hold: crew.connections,
            pipelined: self.args.pipelined,
            send_buffer: self.args.attack_send_buffer,
            from: self.args.attack_from,
        });
        let (finished, ramp, rss) = thread::scope(|s| {
            let _stop = StopOnDrop(&ctx.stop);
            if let Phase::Attack(kind) = phase {
                let body = hostile::body(kind);
                for worker in 0..crew.threads {
                    let ctx = &ctx;
                    s.spawn(move || body(ctx, worker));
                }
            }
            let ramp = ramp_up(&ctx, crew.connections, &mut notes);
            let finished = engine::run(&self.plan, &self.target, &self.shopper);
            let rss = self.common.server_pid.and_then(rss_kib);
            (finished, ramp, rss)
        });
        if phase != Phase::Baseline {
            thread::sleep(SETTLE.min(self.args.phase));
        }
        let rss_after = self.common.server_pid.and_then(rss_kib);
        let header = Header {
            scenario: "attack",
            target: phase.name(),
            addr: addr.to_string(),
            connections: self.plan.connections,
            threads: self.plan.threads,
            pace: self.plan.pace,
            seed: self.common.seed,
            request_ids: self.common.request_ids,
        };
        PhaseReport {
            phase: phase.name().into(),
            normal: Report::new(header, &finished),
            attack: (phase != Phase::Baseline).then(|| ctx.counts()),
            ramp_ms: ramp.as_millis() as u64,
            rss_kib: rss,
            rss_growth_kib: None,
            rss_after_kib: rss_after,
            problems: Vec::new(),
            notes,
        }
    }
}

/// Waits until the attack has tried its `connections` (made or failed), at
/// most [`RAMP_MAX`]; returns how long that took.
fn ramp_up(ctx: &Ctx, connections: usize, notes: &mut Vec<String>) -> Duration {
    let begun = Instant::now();
    let tried = || {
        let c = ctx.counts();
        c.opened + c.connect_errors
    };
    while tried() < connections as u64 {
        if begun.elapsed() >= RAMP_MAX {
            notes.push(format!(
                "the attack had tried only {} of its {connections} connections after {} s",
                tried(),
                RAMP_MAX.as_secs()
            ));
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    begun.elapsed()
}

/// A process's resident memory in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The `VmRSS:` line of a /proc/PID/status, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Raises this process's soft limit on open files to its hard limit: the
/// idle-10k attack needs more than the usual 1024. Returns the limit in
/// force, if it can be read.
fn raise_open_files_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(MAX_OPEN_FILES).ok()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Scenario};

    fn args(flags: &[&str]) -> cli::Attack {
        let cli = Cli::try_parse_from(["seckill-bench", "attack"].iter().chain(flags)).unwrap();
        match cli.scenario {
            Scenario::Attack(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_baseline_comes_first_then_the_attacks_in_their_order() {
        let all = phase_plan(&[]);
        assert_eq!(all.len(), 11);
        assert_eq!(all[0], Phase::Baseline);
        assert_eq!(all[1], Phase::Attack(AttackKind::RandomBytes));
        assert_eq!(all[9], Phase::Attack(AttackKind::UnreadGoods));
        assert_eq!(all[10], Phase::Attack(AttackKind::MillionPipelined));
        let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
        assert_eq!(names[7], "idle-10k");

        let some = phase_plan(&args(&["--attacks", "no-read,huge-length,no-read"]).attacks);
        assert_eq!(
            some,
            [
                Phase::Baseline,
                Phase::Attack(AttackKind::HugeLength),
                Phase::Attack(AttackKind::NoRead)
            ]
        );
    }

    #[test]
    fn crews_follow_the_flags() {
        let a = args(&["--attackers", "7", "--idle-connections", "300"]);
        assert_eq!(
            crew(AttackKind::HugeLength, &a),
            Crew {
                threads: 7,
                connections: 7
            }
        );
        assert_eq!(
            crew(AttackKind::Idle10k, &a),
            Crew {
                threads: 1,
                connections: 300
            }
        );
        assert_eq!(crew(AttackKind::Truncated, &a).connections, 1_000);
        assert_eq!(crew(AttackKind::NoRead, &a).threads, 20);
        assert_eq!(crew(AttackKind::MillionPipelined, &a).threads, 1);
    }

    #[test]
    fn a_crew_is_cut_to_the_open_files_limit_and_says_so() {
        let idle = Crew {
            threads: 1,
            connections: 10_000,
        };
        assert_eq!(fit(idle, Some(20_000), 10), (idle, None));
        assert_eq!(fit(idle, None, 10), (idle, None));
        let (cut, why) = fit(idle, Some(4_096), 10);
        assert_eq!(cut.connections, 4_096 - 256 - 10);
        assert_eq!(cut.threads, 1);
        let why = why.expect("a reason");
        assert!(
            why.contains("4096") && why.contains("RLIMIT_NOFILE"),
            "{why}"
        );
        let many = Crew {
            threads: 500,
            connections: 500,
        };
        let (cut, _) = fit(many, Some(300), 10);
        assert_eq!((cut.threads, cut.connections), (34, 34));
    }

    #[test]
    fn vm_rss_is_read_from_the_status_file() {
        let status =
            "Name:\tseckill-server\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(51_234));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn the_open_files_limit_is_at_least_what_it_was() {
        let limit = raise_open_files_limit().expect("a limit");
        assert!(limit >= 256, "{limit}");
    }
}
