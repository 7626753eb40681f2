//! The Redis Cluster component: six real nodes, the Envoy `redis_proxy` in
//! front of them, webdis in front of the proxy, and a master killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use stack::cluster::key_slot;
use stack::resp::Resp;
use stack::{get, RedisCluster, Webdis};

#[test]
fn the_proxy_spreads_keys_over_every_master_and_fails_over() {
    let mut cluster = RedisCluster::start();
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "three masters: {masters:?}");
    // Our slot function agrees with Redis's.
    for key in [
        &b"foo"[..],
        b"{a}b",
        b"limiter:{api:10_per_60s:global}:1700000040",
    ] {
        assert_eq!(
            cluster
                .node_command(masters[0], &[b"CLUSTER", b"KEYSLOT", key])
                .unwrap(),
            Resp::Integer(i64::from(key_slot(key)))
        );
    }
    // 60 keys written through webdis -> proxy land on all three masters.
    let webdis = Webdis::start(cluster.proxy_port());
    for i in 0..60 {
        let r = get(webdis.port(), &format!("/INCR/k{i}.raw"), &[]).unwrap();
        assert_eq!(r.body, b":1\r\n", "{}", r.text());
    }
    for port in &masters {
        let Resp::Integer(n) = cluster.node_command(*port, &[b"DBSIZE"]).unwrap() else {
            panic!("DBSIZE")
        };
        assert!(n > 5, "master {port} holds {n} of 60 keys");
    }
    assert_eq!(cluster.keys().len(), 60);
    // A script over keys of two slots is refused by the node.
    let before = cluster.error_count("CROSSSLOT");
    let reply = cluster
        .command(&[b"EVAL", b"return 1", b"2", b"{a}x", b"{b}x"])
        .unwrap();
    assert!(
        matches!(&reply, Resp::Error(e) if e.starts_with("CROSSSLOT")),
        "{reply:?}"
    );
    assert_eq!(cluster.error_count("CROSSSLOT"), before + 1);

    // Kill the master of k0; its replica takes over and the proxy follows.
    let victim = cluster.master_of(b"k0");
    cluster.kill_node(victim);
    let took = cluster.wait_healthy(Duration::from_secs(20)).unwrap();
    eprintln!("failover took {took:?}");
    assert!(!cluster.master_ports().contains(&victim));
    let answered = (0..100).find_map(|_| {
        let r = get(webdis.port(), "/INCR/k0.raw", &[]).ok()?;
        if r.body.starts_with(b":") {
            Some(r.body)
        } else {
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    });
    // The replica had the key (or, if replication lagged, starts over).
    assert!(
        matches!(answered.as_deref(), Some(b":2\r\n" | b":1\r\n")),
        "{answered:?}; proxy log:\n{}",
        cluster.proxy_log()
    );
}

/// The replication-loss window, made real: with the link from a master to
/// its replica cut, the replica's offset stays put while the master
/// acknowledges 20 more increments; killed, the master takes them with
/// it and the promoted replica answers from the count it had at the cut.
/// Without the cut, the replica holds every increment.
#[test]
fn a_cut_replication_link_loses_what_the_master_acknowledged_after_it() {
    for cut in [true, false] {
        let mut cluster = RedisCluster::start();
        let key: &[u8] = b"{loss}counter";
        let victim = cluster.master_of(key);
        for _ in 0..5 {
            assert!(matches!(
                cluster.command(&[b"INCR", key]),
                Ok(Resp::Integer(_))
            ));
        }
        cluster
            .wait_replica_caught_up(victim, Duration::from_secs(5))
            .unwrap();
        let replica = cluster.replica_of(victim).unwrap();
        let the_cut = cut.then(|| cluster.cut_replication(victim).unwrap());
        for _ in 0..20 {
            assert!(matches!(
                cluster.command(&[b"INCR", key]),
                Ok(Resp::Integer(_))
            ));
        }
        if let Some(the_cut) = &the_cut {
            let master = cluster.replication(victim).unwrap();
            let behind = cluster.replication(replica).unwrap();
            assert!(!behind.link_up);
            assert_eq!(
                behind.offset, the_cut.replica_offset,
                "the replica's offset moved"
            );
            assert!(master.offset > behind.offset, "{master:?} {behind:?}");
        } else {
            cluster
                .wait_replica_caught_up(victim, Duration::from_secs(5))
                .unwrap();
        }
        cluster.kill_node(victim);
        cluster.wait_healthy(Duration::from_secs(20)).unwrap();
        if let Some(the_cut) = &the_cut {
            cluster.restore_replication(the_cut).unwrap();
        }
        assert_eq!(cluster.master_of(key), replica);
        let count = cluster.node_command(replica, &[b"GET", key]).unwrap();
        let expected: &[u8] = if cut { b"5" } else { b"25" };
        assert_eq!(count, Resp::Bulk(Some(expected.to_vec())), "cut: {cut}");
    }
}
