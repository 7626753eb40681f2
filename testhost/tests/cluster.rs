//! The Higress path to a Redis Cluster: our modules built for Higress
//! (`bash scripts/build.sh --higress`) send Higress's native Redis calls
//! to a Redis cluster name, and that name routes to Envoy's `redis_proxy`
//! in front of a real Redis Cluster (three masters, three replicas), as a
//! Higress deployment would route it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{higress_module, REDIS_CLUSTER};
use serde_json::json;
use stack::resp::Resp;
use stack::RedisCluster;
use testhost::{Host, Request, Setup};

#[test]
fn limiter_counts_each_key_exactly_through_redis_proxy_on_two_hosts() {
    let cluster = RedisCluster::start();
    let setup = Setup::default().redis(
        REDIS_CLUSTER,
        format!("127.0.0.1:{}", cluster.proxy_port())
            .parse()
            .unwrap(),
    );
    let config = json!({
        "rule_name": "higress-cluster",
        "rule_items": [{"limit_by_per_header": "x-user",
                        "limit_keys": [{"key": "*", "query_per_minute": 2}]}],
        "rejected_code": 429,
        "failure_mode_deny": true,
        "redis": {"service_name": "redis.dns", "timeout": 1000, "cluster": true},
    })
    .to_string();
    let load = || {
        Host::load(&higress_module("limiter"), config.as_bytes(), setup.clone())
            .unwrap_or_else(|e| panic!("limiter did not start: {e}"))
    };
    let mut hosts = [load(), load()];
    for key in 0..30 {
        let got: Vec<u32> = (0..4)
            .map(|i| {
                let request = Request::get("/").header("x-user", format!("u-{key}").into_bytes());
                hosts[i % 2].run(&request).status
            })
            .collect();
        assert_eq!(got, [200, 200, 429, 429], "key u-{key}");
    }
    // One counter per key, on every master.
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3);
    let mut total = 0;
    for port in masters {
        let Ok(Resp::Array(Some(keys))) =
            cluster.node_command(port, &[b"KEYS", b"*higress-cluster*"])
        else {
            panic!("KEYS on {port}")
        };
        assert!(
            keys.len() >= 3,
            "master {port} holds {} counters",
            keys.len()
        );
        total += keys.len();
    }
    assert_eq!(total, 30);
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}
