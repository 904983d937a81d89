//! The files of `deploy/` are checked by the tools that will read them:
//! systemd's verifier for the unit, promtool for the scrape config and for
//! every PromQL expression of the Grafana dashboard, and the server's own
//! configuration loader for the example config. Each test that needs a tool
//! says so and passes without it (printing why) only when the tool is not
//! installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The metric names of the /metrics contract (the plan for issue 17,
/// `metrics-contract.md`): what the endpoint serves, so all a dashboard
/// may ask for.
const CONTRACT: [(&str, Kind); 19] = [
    ("seckill_build_info", Kind::Gauge),
    ("seckill_requests_total", Kind::Counter),
    ("seckill_request_duration_seconds", Kind::Histogram),
    ("seckill_store_call_duration_seconds", Kind::Histogram),
    ("seckill_stock_call_buys", Kind::Histogram),
    ("seckill_order_commit_orders", Kind::Histogram),
    ("seckill_refusals_total", Kind::Counter),
    ("seckill_connections", Kind::Gauge),
    ("seckill_connections_accepted_total", Kind::Counter),
    ("seckill_requests_in_flight", Kind::Gauge),
    ("seckill_job_queue_depth", Kind::Gauge),
    ("seckill_order_writer_backlog", Kind::Gauge),
    ("seckill_queued_drain_lag_entries", Kind::Gauge),
    ("seckill_queued_drain_lag_seconds", Kind::Gauge),
    ("seckill_store_up", Kind::Gauge),
    ("seckill_unsent_reply_bytes", Kind::Gauge),
    ("seckill_buffered_input_bytes", Kind::Gauge),
    ("seckill_goods_stock", Kind::Gauge),
    ("seckill_goods_remaining", Kind::Gauge),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// Whether `tool` runs here. A missing tool fails the test (test.sh runs
/// scripts/ops-tools.sh, which installs them), unless
/// `SECKILL_SKIP_OPS_TOOLS=1` says that a machine without it is expected:
/// then the test says that it went without it.
fn have(tool: &str, test: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var_os("SECKILL_SKIP_OPS_TOOLS").is_none() {
        panic!("{test}: `{tool}` is not installed: run scripts/ops-tools.sh (or set SECKILL_SKIP_OPS_TOOLS=1)");
    }
    eprintln!("{test}: skipped, `{tool}` is not installed (SECKILL_SKIP_OPS_TOOLS is set)");
    false
}

/// The `Key=value` lines of a unit file, comments and sections left out.
fn unit_settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn setting<'u>(settings: &[(&str, &'u str)], key: &str) -> Vec<&'u str> {
    settings
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !have("systemd-analyze", "systemd_analyze_verifies_the_unit") {
        return;
    }
    // The verifier checks that ExecStart's program exists: the one built
    // for this test stands in for /usr/local/bin's.
    let unit = read("seckill.service").replace(
        "/usr/local/bin/seckill-server",
        env!("CARGO_BIN_EXE_seckill-server"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seckill.service");
    std::fs::write(&path, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It exits 0 on an unknown key or a bad value (it only warns): any
    // word from it is a finding.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// What the unit promises: readiness from the server, restart on failure,
/// the token from a credential file and no secret on the command line, and
/// a stop timeout above the shutdown grace of the example config.
#[test]
fn the_unit_waits_for_readiness_and_outlasts_the_shutdown_grace() {
    let unit = read("seckill.service");
    let settings = unit_settings(&unit);
    assert_eq!(setting(&settings, "Type"), ["notify"]);
    assert_eq!(setting(&settings, "Restart"), ["on-failure"]);
    let exec = setting(&settings, "ExecStart").concat();
    assert!(
        exec.contains("--config /etc/seckill/seckill.toml"),
        "{exec}"
    );
    for secret in [
        "--admin-token ",
        "--admin-token=",
        "--redis ",
        "--redis=",
        "--redis-cluster ",
        "--redis-cluster=",
        "--mysql ",
        "--mysql=",
        "://",
    ] {
        assert!(
            !exec.contains(secret),
            "a secret on the command line: {exec}"
        );
    }
    assert!(setting(&settings, "LoadCredential").contains(&"admin-token:/etc/seckill/admin-token"));
    assert!(setting(&settings, "Environment").contains(&"SECKILL_ADMIN_TOKEN_FILE=%d/admin-token"));

    let stop = setting(&settings, "TimeoutStopSec").concat();
    let stop = humantime::parse_duration(&stop).expect("TimeoutStopSec");
    let config: toml::Table = read("seckill.toml").parse().expect("seckill.toml");
    let grace = config
        .get("shutdown-grace")
        .and_then(toml::Value::as_str)
        .map(|g| humantime::parse_duration(g).expect("shutdown-grace"))
        .unwrap_or(Duration::from_secs(5));
    assert!(
        stop >= grace * 3,
        "TimeoutStopSec {stop:?} leaves too little above the grace {grace:?} for the last commit"
    );
}

/// The example config is one the server takes: every key a flag, every
/// value good, the flags consistent.
#[test]
fn the_example_config_is_accepted_by_the_server() {
    let path = deploy("seckill.toml");
    let loaded = seckill::Config::load_from([
        "seckill-server".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    loaded.config.check().expect("consistent flags");
    assert!(loaded.config.redis.is_some() && loaded.config.mysql.is_some());
    // No secret in the example: no token, no URL with a password.
    let table: toml::Table = read("seckill.toml").parse().expect("seckill.toml");
    assert!(!table.contains_key("admin-token"));
    for url in table.values().filter_map(toml::Value::as_str) {
        let userinfo = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'));
        assert!(
            userinfo.is_none_or(|(user, _)| !user.contains(':')),
            "a password in {url}"
        );
    }
}

#[test]
fn promtool_checks_the_scrape_config() {
    if !have("promtool", "promtool_checks_the_scrape_config") {
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(deploy("prometheus.yml"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every PromQL expression of the dashboard (its panels' and its
/// variable's), with Grafana's own variables replaced as Grafana would.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        // label_values(METRIC, LABEL) is Grafana's, not PromQL: its metric
        // is checked, as the selector it is.
        let query = var["query"]["query"].as_str().expect("variable query");
        let metric = query
            .strip_prefix("label_values(")
            .and_then(|q| q.split(',').next())
            .expect("a label_values query");
        exprs.push(metric.trim().to_owned());
    }
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
        })
        .collect()
}

/// The `seckill_*` metric names in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("seckill_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// A name as the contract has it: a histogram's series carry a suffix.
fn in_contract(name: &str) -> bool {
    CONTRACT.iter().any(|(n, kind)| {
        *n == name
            || (*kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(n)))
    })
}

#[test]
fn the_dashboard_asks_only_for_contract_metrics_in_valid_promql() {
    let dashboard: Value =
        serde_json::from_str(&read("grafana-seckill.json")).expect("the dashboard is JSON");
    // Importable: it asks for its Prometheus data source on import.
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for wanted in [
        "BUY rate by outcome",
        "Request latency p50 / p99 (server side)",
        "Remaining per goods",
        "Store call latency p50 / p99",
        "Order-writer backlog and queued drain lag",
        "Store up",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }

    let exprs = dashboard_expressions(&dashboard);
    let mut used = Vec::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                in_contract(&name),
                "{name} (in `{expr}`) is not in the contract"
            );
            used.push(name);
        }
    }
    for needed in [
        "seckill_requests_total",
        "seckill_request_duration_seconds_bucket",
        "seckill_goods_remaining",
        "seckill_store_call_duration_seconds_bucket",
        "seckill_order_writer_backlog",
        "seckill_queued_drain_lag_entries",
        "seckill_store_up",
    ] {
        assert!(
            used.iter().any(|u| u == needed),
            "the dashboard never asks for {needed}"
        );
    }

    // promtool parses every expression, as recording rules.
    if !have("promtool", "the_dashboard_..._valid_promql (PromQL part)") {
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).expect("a JSON string is a YAML string");
        rules.push_str(&format!(
            "      - record: seckill_dashboard_expr_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, rules).expect("write the rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
