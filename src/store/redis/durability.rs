//! What the queued mode's acknowledged orders rest on, asked of Redis at
//! start.
//!
//! In the `queued` mode a buyer is told "ok" once the order is in a Redis
//! stream; MySQL has it only later. So the order survives a restart of
//! Redis only if Redis logs every write before it answers (`appendonly yes`,
//! `appendfsync always`), and a failover only if the replica promoted had it
//! (`--redis-wait N`, each reservation waiting for N replicas). The durable
//! mode needs neither: MySQL holds its orders, and the stock is rebuilt from
//! them. The server cannot make Redis safe, but it can say at start where it
//! is not, as it does for MySQL's `innodb_flush_log_at_trx_commit`.

use std::collections::HashMap;

use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, RedisResult, Value};

use super::link::Link;
use super::RedisStock;
use crate::store::StoreError;

/// What one primary said of its persistence and replicas. `None` where it
/// would not say (CONFIG renamed or refused by an ACL, as managed Redis
/// services do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDurability {
    /// Its address, as the client knows it (`redis` on one Redis).
    pub node: String,
    pub appendonly: Option<bool>,
    pub appendfsync: Option<String>,
    /// Replicas connected to it now.
    pub replicas: Option<u32>,
}

/// Where acknowledged queued orders may be lost, one sentence each, for
/// the log; empty where nothing was found. `wait` is `--redis-wait`.
pub fn queued_risks(nodes: &[NodeDurability], wait: u32) -> Vec<String> {
    let mut risks = Vec::new();
    for n in nodes {
        let node = &n.node;
        match (n.appendonly, n.appendfsync.as_deref()) {
            (Some(false), _) => risks.push(format!(
                "redis {node}: appendonly is no: a restart of Redis loses the queued orders \
                 told \"ok\" and not yet in the order store (set appendonly yes, appendfsync always)"
            )),
            (Some(true), Some("always")) => {}
            (Some(true), Some(fsync)) => risks.push(format!(
                "redis {node}: appendfsync is {fsync}, not always: a crash of Redis's host may \
                 lose the last queued orders told \"ok\""
            )),
            _ => risks.push(format!(
                "redis {node}: could not read appendonly and appendfsync (CONFIG refused, or no \
                 answer): \
                 queued orders told \"ok\" survive a restart of Redis only with appendonly yes, \
                 appendfsync always"
            )),
        }
        match n.replicas {
            Some(r) if r > 0 && wait == 0 => risks.push(format!(
                "redis {node}: {r} replica(s) and no --redis-wait: replication is asynchronous, \
                 so a failover may lose queued orders told \"ok\" (use --redis-wait 1)"
            )),
            Some(r) if wait > r => risks.push(format!(
                "redis {node}: --redis-wait {wait} but {r} replica(s) connected: every BUY on \
                 its goods will wait and be answered in doubt"
            )),
            _ => {}
        }
    }
    risks
}

impl RedisStock {
    /// What each primary says of its persistence and replicas: the one
    /// Redis, or every primary of the cluster, each asked on its own, so
    /// that one node that fails or refuses is that node's answer, not every
    /// node's.
    pub(in crate::store) fn durability(&self) -> Result<Vec<NodeDurability>, StoreError> {
        let nodes = match self.is_cluster() {
            true => Some(self.primaries()?),
            false => None,
        };
        let mut info = ::redis::cmd("INFO");
        info.arg("replication");
        let asks = [config_get(), info];
        let answers = self.call("persistence settings", |con| {
            Ok(ask_each(con, nodes.as_deref(), &asks))
        })?;
        Ok(answers
            .into_iter()
            .map(|(node, [config, info])| {
                let settings = config.ok().and_then(parse_config);
                NodeDurability {
                    appendonly: settings
                        .as_ref()
                        .and_then(|s| s.get("appendonly"))
                        .map(|v| v == "yes"),
                    appendfsync: settings.and_then(|mut s| s.remove("appendfsync")),
                    replicas: info.ok().as_ref().and_then(parse_replicas),
                    node,
                }
            })
            .collect())
    }
}

/// `CONFIG GET append*`: one pattern, which every Redis version takes (7
/// takes several parameters, 6 one).
fn config_get() -> Cmd {
    let mut cmd = ::redis::cmd("CONFIG");
    cmd.arg("GET").arg("append*");
    cmd
}

/// Each of `asks` sent to the one Redis, or to each of the cluster's
/// `primaries` (host, port): every node's answers, named by the node. A
/// refusal (an ACL's, a renamed command's) is an answer of nil.
fn ask_each(
    con: &mut Link,
    primaries: Option<&[(String, u16)]>,
    asks: &[Cmd; 2],
) -> Vec<(String, [RedisResult<Value>; 2])> {
    match (con, primaries) {
        (Link::Cluster(c), Some(primaries)) => primaries
            .iter()
            .map(|(host, port)| {
                let mut ask = |cmd: &Cmd| {
                    let node = SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    };
                    refused_as_value(c.route_command(cmd, RoutingInfo::SingleNode(node)))
                };
                (format!("{host}:{port}"), [ask(&asks[0]), ask(&asks[1])])
            })
            .collect(),
        (con, _) => {
            let answers = [asks[0].query(con), asks[1].query(con)];
            vec![("redis".into(), answers.map(refused_as_value))]
        }
    }
}

/// A server's refusal is an answer ("would not say"); a broken link is not.
fn refused_as_value(r: RedisResult<Value>) -> RedisResult<Value> {
    match r {
        Err(e) if super::link::reusable(&e) => Ok(Value::Nil),
        other => other,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        _ => None,
    }
}

/// CONFIG GET's answer: a flat array of names and values (RESP2) or a map
/// (RESP3); `None` for anything else (a refusal).
fn parse_config(v: Value) -> Option<HashMap<String, String>> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        _ => return None,
    };
    let map: HashMap<String, String> = pairs
        .iter()
        .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// `connected_slaves:N` of INFO replication.
fn parse_replicas(v: &Value) -> Option<u32> {
    text(v)?
        .lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        appendonly: Option<bool>,
        fsync: Option<&str>,
        replicas: Option<u32>,
    ) -> NodeDurability {
        NodeDurability {
            node: "n1".into(),
            appendonly,
            appendfsync: fsync.map(str::to_string),
            replicas,
        }
    }

    #[test]
    fn a_logged_and_fsynced_redis_without_replicas_is_safe() {
        assert!(queued_risks(&[node(Some(true), Some("always"), Some(0))], 0).is_empty());
        assert!(queued_risks(&[node(Some(true), Some("always"), Some(1))], 1).is_empty());
    }

    #[test]
    fn each_gap_is_named() {
        let risks = |n, wait| queued_risks(&[n], wait).join("\n");
        assert!(risks(node(Some(false), Some("always"), Some(0)), 0).contains("appendonly is no"));
        assert!(risks(node(Some(true), Some("everysec"), Some(0)), 0).contains("everysec"));
        assert!(risks(node(None, None, Some(0)), 0).contains("could not read"));
        assert!(risks(node(Some(true), Some("always"), Some(2)), 0).contains("no --redis-wait"));
        assert!(
            risks(node(Some(true), Some("always"), Some(1)), 2).contains("1 replica(s) connected")
        );
        // Unknown replicas: nothing said of them.
        assert!(queued_risks(&[node(Some(true), Some("always"), None)], 0).is_empty());
    }

    #[test]
    fn config_and_info_answers_are_read_in_either_protocol() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let flat = Value::Array(vec![
            bulk("appendonly"),
            bulk("yes"),
            bulk("appendfsync"),
            bulk("always"),
        ]);
        let map = Value::Map(vec![(bulk("appendonly"), bulk("no"))]);
        assert_eq!(parse_config(flat).unwrap()["appendfsync"], "always");
        assert_eq!(parse_config(map).unwrap()["appendonly"], "no");
        assert_eq!(parse_config(Value::Nil), None);
        let info = bulk("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n");
        assert_eq!(parse_replicas(&info), Some(2));
        assert_eq!(parse_replicas(&bulk("role:master\r\n")), None);
    }
}
