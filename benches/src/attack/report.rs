//! The attack run's report: one row per phase, as a table for people (and
//! BENCHMARKS.md) or one JSON object, and the verdict.

use std::fmt::Write as _;

use serde::Serialize;

use super::hostile::AttackCounts;
use crate::report::{human_us, Report};

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttackReport {
    pub scenario: String,
    pub addr: String,
    /// The normal client's requests/s.
    pub rate: f64,
    /// The normal client's connections.
    pub connections: usize,
    pub phase_s: f64,
    pub server_pid: Option<u32>,
    /// The files this process may open (RLIMIT_NOFILE), after raising it.
    pub open_files_limit: Option<u64>,
    /// The goods the normal client reads and buys.
    pub goods: u64,
    pub phases: Vec<PhaseReport>,
    /// No phase has a problem.
    pub passed: bool,
}

/// One phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// `baseline` or the attack's name.
    pub phase: String,
    /// What the normal client saw.
    pub normal: Report,
    /// The attack's own counters; none for the baseline.
    pub attack: Option<AttackCounts>,
    /// How long the attack took to open its connections, before the normal
    /// client started.
    pub ramp_ms: u64,
    /// The server's resident memory at the end of the phase (--server-pid).
    pub rss_kib: Option<u64>,
    /// `rss_kib` less the baseline's.
    pub rss_growth_kib: Option<i64>,
    /// The server's resident memory once the attack has closed its
    /// connections and the server has had a moment to see them go: what it
    /// gave back.
    pub rss_after_kib: Option<u64>,
    /// What the normal client saw that a healthy server would not cause it.
    pub problems: Vec<String>,
    /// What else the reader should know (an attack cut down, a slow ramp).
    pub notes: Vec<String>,
}

/// What a healthy server never causes a normal client: error replies other
/// than `busy` (which is the server's documented answer to overload), on a
/// goods that never sells out and BUYs by users each new; connections
/// failed or closed; requests never answered.
pub fn problems(normal: &Report) -> Vec<String> {
    let o = &normal.outcomes;
    let mut found = Vec::new();
    if o.connection_failures > 0 {
        found.push(format!(
            "{} of the normal client's connections could not be opened or were closed \
             (if they were refused: the normal client shares the attacker's address, \
             is --max-connections-per-ip above the attack's connections?)",
            o.connection_failures
        ));
    }
    if o.lost > 0 {
        found.push(format!("{} requests never answered", o.lost));
    }
    if o.sold_out > 0 {
        found.push(format!("{} sold_out replies", o.sold_out));
    }
    if o.already_bought > 0 {
        found.push(format!("{} already_bought replies", o.already_bought));
    }
    for (kind, n) in &o.errors_by_kind {
        found.push(format!("{n} {kind} replies"));
    }
    if normal.sent == 0 && o.connection_failures == 0 {
        found.push("the normal client sent nothing".into());
    }
    found
}

impl AttackReport {
    /// Fills in each phase's memory growth and problems, and the verdict.
    pub fn conclude(&mut self) {
        let baseline = self
            .phases
            .iter()
            .find(|p| p.attack.is_none())
            .and_then(|p| p.rss_kib);
        for p in &mut self.phases {
            p.rss_growth_kib = baseline
                .zip(p.rss_kib)
                .map(|(base, now)| now as i64 - base as i64);
            p.problems = problems(&p.normal);
        }
        self.passed = self.phases.iter().all(|p| p.problems.is_empty());
    }

    /// The phases with problems, as `phase: problem; problem`.
    pub fn failures(&self) -> Vec<String> {
        self.phases
            .iter()
            .filter(|p| !p.problems.is_empty())
            .map(|p| format!("{}: {}", p.phase, p.problems.join("; ")))
            .collect()
    }

    /// The table, then the problems and notes.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "attack → {}: a normal client at {} req/s over {} connections (open loop, latency \
             from the schedule), {} s per phase",
            self.addr, self.rate, self.connections, self.phase_s
        );
        let _ = writeln!(
            s,
            "{:<18}{:>8}{:>8}{:>6}{:>7}{:>6}{:>7}{:>10}{:>10}{:>10}{:>10}{:>8}{:>9}{:>11}{:>11}{:>11}{:>11}{:>9}",
            "phase",
            "sent",
            "ok",
            "busy",
            "errors",
            "lost",
            "broken",
            "p50",
            "p99",
            "p99.9",
            "max",
            "conns",
            "refused",
            "bytes",
            "rss",
            "rss+",
            "rss after",
            "cpu/req"
        );
        for p in &self.phases {
            let o = &p.normal.outcomes;
            let l = &p.normal.latency;
            let attack = |f: fn(&AttackCounts) -> String| p.attack.as_ref().map_or("-".into(), f);
            let _ = writeln!(
                s,
                "{:<18}{:>8}{:>8}{:>6}{:>7}{:>6}{:>7}{:>10}{:>10}{:>10}{:>10}{:>8}{:>9}{:>11}{:>11}{:>11}{:>11}{:>9}",
                p.phase,
                p.normal.sent,
                o.ok,
                o.busy,
                o.other_errors + o.sold_out + o.already_bought,
                o.lost,
                o.connection_failures,
                human_us(l.p50_us),
                human_us(l.p99_us),
                human_us(l.p999_us),
                human_us(l.max_us),
                attack(|a| a.opened.to_string()),
                attack(|a| a.refused.to_string()),
                attack(|a| human_bytes(a.bytes_sent)),
                p.rss_kib.map_or("-".into(), |kib| human_bytes(kib * 1024)),
                p.rss_growth_kib.map_or("-".into(), human_growth),
                p.rss_after_kib.map_or("-".into(), |kib| human_bytes(kib * 1024)),
                // The server's CPU over the phase, attack included, per
                // request of the normal client.
                p.normal
                    .cost
                    .first()
                    .map_or("-".into(), |c| format!("{:.1}µs", c.us_per_request)),
            );
        }
        for p in &self.phases {
            for problem in &p.problems {
                let _ = writeln!(s, "  FAILED {}: {problem}", p.phase);
            }
            for note in &p.notes {
                let _ = writeln!(s, "  note {}: {note}", p.phase);
            }
        }
        let _ = writeln!(
            s,
            "{}",
            if self.passed {
                "passed: the normal client saw no error, broken connection or lost request"
            } else {
                "FAILED: the normal client saw what a healthy server would not cause (above)"
            }
        );
        s
    }
}

/// Bytes for people.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    if x < KIB {
        format!("{n} B")
    } else if x < KIB * KIB {
        format!("{:.1} KiB", x / KIB)
    } else if x < KIB * KIB * KIB {
        format!("{:.1} MiB", x / (KIB * KIB))
    } else {
        format!("{:.2} GiB", x / (KIB * KIB * KIB))
    }
}

/// A signed memory growth in KiB, for people.
fn human_growth(kib: i64) -> String {
    let sign = if kib < 0 { "-" } else { "+" };
    format!("{sign}{}", human_bytes(kib.unsigned_abs() * 1024))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{Finished, Pace};
    use crate::report::Header;
    use crate::stats::{Live, Outcome, Recorder};

    fn normal(phase: &'static str, outcomes: &[Outcome], lost: u64) -> Report {
        let live = Live::default();
        let mut recorder = Recorder::default();
        for (i, &outcome) in outcomes.iter().enumerate() {
            let at = Duration::from_millis(i as u64);
            recorder.record(
                "buy",
                outcome,
                Duration::from_micros(300 + i as u64),
                at,
                &live,
            );
        }
        recorder.outcomes.lost = lost;
        let finished = Finished {
            recorder,
            acks: Vec::new(),
            lost_buys: Vec::new(),
            elapsed: Duration::from_secs(1),
            connected: 10,
            sent: outcomes.len() as u64 + lost,
            servers: Vec::new(),
            cost: Vec::new(),
        };
        let header = Header {
            scenario: "attack",
            target: phase,
            addr: "127.0.0.1:7712".into(),
            connections: 10,
            threads: 2,
            pace: Pace::Open {
                rate: 2000.0,
                max_in_flight: 32,
            },
            seed: 1,
            request_ids: false,
        };
        Report::new(header, &finished)
    }

    fn phase(name: &'static str, normal: Report, rss_kib: u64) -> PhaseReport {
        PhaseReport {
            phase: name.into(),
            normal,
            attack: (name != "baseline").then(|| AttackCounts {
                opened: 5000,
                refused: 4990,
                bytes_sent: 20_480,
                ..AttackCounts::default()
            }),
            ramp_ms: 3,
            rss_kib: Some(rss_kib),
            rss_growth_kib: None,
            rss_after_kib: None,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn report() -> AttackReport {
        let fine = [Outcome::Ok; 100];
        let mut busy = fine.to_vec();
        busy[..5].fill(Outcome::Busy);
        let mut bad = fine.to_vec();
        bad[..2].fill(Outcome::Error("bad_request"));
        let mut r = AttackReport {
            scenario: "attack".into(),
            addr: "127.0.0.1:7712".into(),
            rate: 2000.0,
            connections: 10,
            phase_s: 5.0,
            server_pid: Some(42),
            open_files_limit: Some(20_000),
            goods: 3,
            phases: vec![
                phase("baseline", normal("baseline", &fine, 0), 40_000),
                phase("huge-length", normal("huge-length", &busy, 0), 41_024),
                phase("no-read", normal("no-read", &bad, 3), 30_000),
            ],
            passed: false,
        };
        r.conclude();
        r
    }

    #[test]
    fn growth_is_over_the_baseline_and_only_real_errors_fail() {
        let r = report();
        let growth: Vec<Option<i64>> = r.phases.iter().map(|p| p.rss_growth_kib).collect();
        assert_eq!(growth, [Some(0), Some(1024), Some(-10_000)]);
        assert!(r.phases[0].problems.is_empty());
        assert!(r.phases[1].problems.is_empty(), "busy is not a failure");
        assert_eq!(
            r.phases[2].problems,
            ["3 requests never answered", "2 bad_request replies"]
        );
        assert!(!r.passed);
        assert_eq!(
            r.failures(),
            ["no-read: 3 requests never answered; 2 bad_request replies"]
        );
    }

    #[test]
    fn the_table_has_a_row_per_phase() {
        let text = report().text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("phase") && lines[1].contains("p99.9"));
        assert!(lines[2].starts_with("baseline"), "{text}");
        assert!(lines[3].starts_with("huge-length") && lines[3].contains("+1.0 MiB"));
        assert!(lines[4].starts_with("no-read") && lines[4].contains("-9.8 MiB"));
        let width = lines[1].chars().count();
        for row in &lines[2..5] {
            assert_eq!(row.chars().count(), width, "columns out of line:\n{text}");
        }
        assert!(text.contains("FAILED no-read: 3 requests never answered"));
        assert!(text.ends_with("would not cause (above)\n"));
    }

    #[test]
    fn the_json_has_every_phase_and_figure() {
        let json = serde_json::to_value(report()).unwrap();
        for key in [
            "scenario",
            "addr",
            "rate",
            "connections",
            "phase_s",
            "server_pid",
        ] {
            assert!(json.get(key).is_some(), "no {key}");
        }
        assert_eq!(json["passed"], false);
        let phases = json["phases"].as_array().unwrap();
        assert_eq!(phases.len(), 3);
        assert_eq!(phases[0]["phase"], "baseline");
        assert!(phases[0]["attack"].is_null());
        assert_eq!(phases[1]["attack"]["opened"], 5000);
        for key in [
            "opened",
            "connect_errors",
            "refused",
            "bytes_sent",
            "requests_sent",
        ] {
            assert!(phases[1]["attack"][key].is_number(), "no attack.{key}");
        }
        assert_eq!(phases[1]["rss_growth_kib"], 1024);
        assert_eq!(phases[1]["normal"]["outcomes"]["busy"], 5);
        assert!(phases[1]["normal"]["latency"]["p999_us"].is_number());
        assert_eq!(phases[2]["problems"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(20_480), "20.0 KiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_growth(-2048), "-2.0 MiB");
    }
}
