//! Every attack, small, against the real server binary: the normal client
//! beside them must see nothing a healthy server would not cause it, and
//! each attack must have done what it says.

use seckill_bench::Output;

mod common;
use common::{run_bench, Server, TOKEN};

#[test]
fn a_normal_client_keeps_its_service_through_every_attack() {
    let server = Server::start(&[
        "--frame-timeout",
        "200ms",
        "--max-connections-per-ip",
        "5000",
    ]);
    let addr = server.addr.clone();
    let pid = server.pid().to_string();
    let output = run_bench(&[
        "attack",
        "--addr",
        &addr,
        "--token",
        TOKEN,
        "--phase",
        "500ms",
        "--rate",
        "400",
        "--connections",
        "4",
        "--threads",
        "1",
        "--attackers",
        "3",
        "--slow-connections",
        "20",
        "--idle-connections",
        "200",
        "--no-readers",
        "2",
        "--unread-connections",
        "20",
        "--pipelined",
        "20000",
        "--server-pid",
        &pid,
    ]);
    let text = output.text();
    assert!(output.passed(), "{text}");
    let Output::Attack(report) = &output else {
        panic!("an attack report expected")
    };
    let names: Vec<&str> = report.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "random-bytes",
            "truncated",
            "huge-length",
            "zero-length",
            "unknown-opcode",
            "wrong-version",
            "idle-10k",
            "no-read",
            "unread-goods",
            "million-pipelined"
        ]
    );
    for p in &report.phases {
        let n = &p.normal;
        assert!(n.sent > 0 && n.outcomes.ok == n.sent, "{}: {text}", p.phase);
        assert!(p.rss_kib.is_some() && p.rss_growth_kib.is_some(), "{text}");
        let Some(a) = p.attack else {
            assert_eq!(p.phase, "baseline");
            continue;
        };
        assert!(
            (a.opened > 0 && a.bytes_sent > 0) || p.phase == "idle-10k",
            "{text}"
        );
        // unknown-opcode: closed once each connection has used its budget of
        // bad requests, then connected again.
        let refused = matches!(
            p.phase.as_str(),
            "random-bytes"
                | "truncated"
                | "huge-length"
                | "zero-length"
                | "unknown-opcode"
                | "wrong-version"
        );
        assert_eq!(a.refused > 0, refused, "{}: {a:?}", p.phase);
    }
    let attack = |name: &str| {
        report
            .phases
            .iter()
            .find(|p| p.phase == name)
            .and_then(|p| p.attack)
            .expect("an attack")
    };
    assert_eq!(attack("idle-10k").opened, 200);
    assert!(attack("unknown-opcode").requests_sent > 0);
    assert_eq!(attack("million-pipelined").opened, 1);
    assert!(attack("million-pipelined").requests_sent > 0);

    let json = output.json();
    assert_eq!(json["passed"], true);
    assert_eq!(json["phases"].as_array().map(Vec::len), Some(11));

    server.stop();
}
