//! What the server, and the stores when they run on this machine, spent on
//! a run: CPU time (user + system, all threads) from `/proc/PID/stat`,
//! read before and after the engine runs, and divided by the requests
//! answered. Connection set-up (connect, HELLO) falls inside the window.

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat`'s times: Linux reports them
/// in USER_HZ, which is 100 on every architecture it runs on.
const TICKS_PER_S: f64 = 100.0;

/// A process to watch, and its CPU time when the watch began.
#[derive(Debug, Clone)]
pub struct Watch {
    pid: u32,
    name: String,
    start_ticks: Option<u64>,
}

/// What one process spent over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
    pub pid: u32,
    /// User + system CPU seconds over the run (10 ms resolution).
    pub cpu_s: f64,
    /// CPU microseconds per request answered.
    pub us_per_request: f64,
}

impl Watch {
    /// Starts watching each of `pids` (unreadable ones report nothing).
    pub fn start(pids: &[u32]) -> Vec<Watch> {
        pids.iter()
            .map(|&pid| Watch {
                pid,
                name: std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| format!("pid {pid}")),
                start_ticks: cpu_ticks(pid),
            })
            .collect()
    }

    /// What it spent since [`start`](Self::start), for `answered` requests.
    pub fn finish(&self, answered: u64) -> Option<Cost> {
        let spent = cpu_ticks(self.pid)?.checked_sub(self.start_ticks?)?;
        let cpu_s = spent as f64 / TICKS_PER_S;
        Some(Cost {
            name: self.name.clone(),
            pid: self.pid,
            cpu_s,
            us_per_request: if answered > 0 {
                cpu_s * 1e6 / answered as f64
            } else {
                0.0
            },
        })
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are
/// counted from its closing parenthesis.
fn parse_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The costs as one line for people: `server 1.20 s (4.1 µs/req), …`.
pub fn line(costs: &[Cost]) -> String {
    costs
        .iter()
        .map(|c| {
            format!(
                "{} {:.2} s ({:.1} µs/req)",
                c.name, c.cpu_s, c.us_per_request
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_found_after_the_name() {
        let stat = "4242 (seckill (server)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    731 269 0 0 20 0 9 0 100 2000000 3000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(1000));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_can_be_watched() {
        let pid = std::process::id();
        let watches = Watch::start(&[pid]);
        let cost = watches[0].finish(10).expect("readable");
        assert_eq!(cost.pid, pid);
        assert!(cost.cpu_s >= 0.0);
    }
}
