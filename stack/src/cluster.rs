//! A private Redis Cluster (three masters, three replicas) behind an Envoy
//! `redis_proxy` listener, which webdis and the plugins talk to as if it
//! were one Redis.
//!
//! Every node is a `redis-server --cluster-enabled yes` on a free loopback
//! port with its cluster bus on another free port (`--cluster-port`), a
//! short `cluster-node-timeout` so a killed master is replaced within a few
//! seconds. `redis-cli --cluster create` assigns the slots and pairs each
//! master with a replica. The proxy is Envoy's
//! `envoy.filters.network.redis_proxy` over an `envoy.clusters.redis`
//! cluster seeded with the masters: it learns the slot map with
//! `CLUSTER SLOTS`, refreshes it every second and after a failure or a
//! redirection, follows `MOVED`/`ASK`, and routes `EVAL`/`EVALSHA` by their
//! first key. Dropping the handle kills the proxy and every node.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::envoy::{envoy_binary, listener_port};
use crate::process::{read_log, tail, Proc, SIGCONT, SIGSTOP};
use crate::resp::{self, Resp};
use crate::{free_port, http, poll, require_tool, Error, RunDir};

/// Masters in the cluster; each has one replica.
pub const MASTERS: usize = 3;
/// How long a node may be unreachable before the others mark it failed
/// and its replica takes over (`cluster-node-timeout`, milliseconds).
pub const NODE_TIMEOUT_MS: u64 = 1000;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    proc: Option<Proc>,
}

/// A running Redis Cluster and the `redis_proxy` Envoy in front of it.
#[derive(Debug)]
pub struct RedisCluster {
    // Field order matters: the processes die before the directory goes.
    proxy: Proc,
    proxy_port: u16,
    proxy_admin_port: u16,
    proxy_frozen: bool,
    nodes: Vec<Node>,
    dir: RunDir,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // A stopped Envoy dies of SIGKILL too; thaw it so nothing waits on it.
        self.thaw_proxy();
    }
}

impl RedisCluster {
    /// Starts six nodes, builds the cluster, waits for `cluster_state:ok` on
    /// every node, starts the proxy and waits until it answers a write in
    /// the slots of every master.
    ///
    /// # Panics
    /// If `redis-server`, `redis-cli` or Envoy is missing, or any step does
    /// not finish within 30 s; the message carries the log involved.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`RedisCluster::start`], returning the failure instead.
    pub fn try_start() -> Result<Self, Error> {
        let server = require_tool("redis-server", "redis-server");
        let cli = require_tool("redis-cli", "redis-tools");
        let dir = RunDir::new("redis-cluster");
        let mut nodes = Vec::with_capacity(MASTERS * 2);
        for i in 0..MASTERS * 2 {
            nodes.push(spawn_node(&server, &dir, i)?);
        }
        create(&cli, &dir, &nodes)?;
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        wait_cluster_ok(&ports, START_TIMEOUT)?;
        wait_replicas_synced(&ports, START_TIMEOUT)?;
        let (proxy, proxy_port, proxy_admin_port) = spawn_proxy(&dir, &ports[..MASTERS])?;
        let cluster = Self {
            proxy,
            proxy_port,
            proxy_admin_port,
            proxy_frozen: false,
            nodes,
            dir,
        };
        cluster.wait_proxy_serves_every_master(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// The `redis_proxy` listener: what webdis (or Higress's Redis client)
    /// connects to.
    pub fn proxy_port(&self) -> u16 {
        self.proxy_port
    }

    /// The proxy Envoy's admin port (its `/stats` count `redis.*`).
    pub fn proxy_admin_port(&self) -> u16 {
        self.proxy_admin_port
    }

    /// One counter of the proxy Envoy, e.g. `redis.redis.command.eval.error`.
    pub fn proxy_stat(&self, name: &str) -> Option<u64> {
        let page = http::get(self.proxy_admin_port, "/stats", &[]).ok()?;
        page.text().lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// The ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Runs one command through the proxy (fresh connection, 5 s timeout).
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<Resp> {
        resp::command(self.proxy_port, args, COMMAND_TIMEOUT)
    }

    /// Runs one command on the node at `port` directly.
    pub fn node_command(&self, port: u16, args: &[&[u8]]) -> std::io::Result<Resp> {
        resp::command(port, args, COMMAND_TIMEOUT)
    }

    /// The ports of the nodes that are masters now (as the first live node
    /// answering `CLUSTER NODES` sees it), failed ones left out.
    pub fn master_ports(&self) -> Vec<u16> {
        self.cluster_nodes()
            .iter()
            .filter(|n| n.master && !n.failed && self.live_ports().contains(&n.port))
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master that serves `key` now.
    ///
    /// # Panics
    /// If no live node knows a master for the key's slot.
    pub fn master_of(&self, key: &[u8]) -> u16 {
        let slot = key_slot(key);
        self.cluster_nodes()
            .into_iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|r| r.contains(&slot)))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The port of the replica of the master at `port`, if it has a live one.
    pub fn replica_of(&self, port: u16) -> Option<u16> {
        let nodes = self.cluster_nodes();
        let id = nodes.iter().find(|n| n.port == port)?.id.clone();
        let live = self.live_ports();
        nodes
            .iter()
            .find(|n| !n.master && n.master_id == id && live.contains(&n.port))
            .map(|n| n.port)
    }

    /// The node's `INFO replication`: role, link to its master, offset.
    pub fn replication(&self, port: u16) -> Option<Replication> {
        match self.node_command(port, &[b"INFO", b"replication"]) {
            Ok(Resp::Bulk(Some(text))) => parse_replication(&String::from_utf8_lossy(&text)),
            _ => None,
        }
    }

    /// Cuts the replication link of the master at `port`: its replica
    /// keeps its data and its place in the cluster, but receives nothing
    /// the master writes from now on, so a failover loses every write the
    /// master acknowledges meanwhile (the loss window of asynchronous
    /// replication, made as long as a test wants).
    ///
    /// How: the replica is given a `masterauth` the master cannot accept
    /// (the master has no password, so the replica's `AUTH` on reconnect
    /// fails and it retries for ever), then the master drops its replica
    /// connections (`CLIENT KILL TYPE replica`). The nodes run with
    /// `cluster-replica-validity-factor 0`, so the replica may still be
    /// promoted however long its link has been down. Returns once the
    /// replica reports its link down and the master no replica.
    ///
    /// # Errors
    /// If the master has no live replica, a command fails, or the link is
    /// not down within 5 s.
    pub fn cut_replication(&self, port: u16) -> Result<ReplicationCut, Error> {
        let replica = self
            .replica_of(port)
            .ok_or_else(|| Error::new(format!("master {port} has no live replica")))?;
        let ok = |what: &str, reply: std::io::Result<Resp>| match reply {
            Ok(Resp::Simple(_) | Resp::Integer(_)) => Ok(()),
            other => Err(Error::new(format!("{what}: {other:?}"))),
        };
        ok(
            "CONFIG SET masterauth on the replica",
            self.node_command(
                replica,
                &[b"CONFIG", b"SET", b"masterauth", CUT_MASTERAUTH.as_bytes()],
            ),
        )?;
        ok(
            "CLIENT KILL TYPE replica on the master",
            self.node_command(port, &[b"CLIENT", b"KILL", b"TYPE", b"replica"]),
        )?;
        let (replica_state, master_state) = poll(COMMAND_TIMEOUT, || {
            let r = self.replication(replica)?;
            let m = self.replication(port)?;
            (!r.link_up && m.replicas == 0).then_some((r, m))
        })
        .ok_or_else(|| {
            Error::new(format!(
                "the link from master {port} to replica {replica} is not down after {COMMAND_TIMEOUT:?}: \
                 replica {:?}, master {:?}",
                self.replication(replica),
                self.replication(port)
            ))
        })?;
        Ok(ReplicationCut {
            master: port,
            replica,
            replica_offset: replica_state.offset,
            master_offset: master_state.offset,
        })
    }

    /// Gives the replica of `cut` its empty `masterauth` back (after the
    /// failover it is a master; if its old master still runs, it resyncs).
    ///
    /// # Errors
    /// If the replica does not accept the setting.
    pub fn restore_replication(&self, cut: &ReplicationCut) -> Result<(), Error> {
        match self.node_command(cut.replica, &[b"CONFIG", b"SET", b"masterauth", b""]) {
            Ok(Resp::Simple(_)) => Ok(()),
            other => Err(Error::new(format!(
                "CONFIG SET masterauth \"\" on {}: {other:?}",
                cut.replica
            ))),
        }
    }

    /// Waits until the replica of the master at `port` has processed every
    /// byte of the master's replication stream (its offset equals the
    /// master's), so that killing the master now loses nothing.
    ///
    /// # Errors
    /// If the master has no live replica or it does not catch up within
    /// `timeout`.
    pub fn wait_replica_caught_up(&self, port: u16, timeout: Duration) -> Result<u64, Error> {
        let replica = self
            .replica_of(port)
            .ok_or_else(|| Error::new(format!("master {port} has no live replica")))?;
        poll(timeout, || {
            let m = self.replication(port)?;
            let r = self.replication(replica)?;
            (r.link_up && r.offset == m.offset).then_some(m.offset)
        })
        .ok_or_else(|| {
            Error::new(format!(
                "replica {replica} did not catch up with master {port} in {timeout:?}: \
                 replica {:?}, master {:?}",
                self.replication(replica),
                self.replication(port)
            ))
        })
    }

    /// Kills the node at `port` with SIGKILL (a crash: no shutdown, no
    /// final replication) and waits until it is gone.
    ///
    /// # Panics
    /// If no running node has that port.
    pub fn kill_node(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port && n.proc.is_some())
            .unwrap_or_else(|| panic!("no running cluster node on port {port}"));
        if let Some(mut proc) = node.proc.take() {
            proc.kill();
        }
    }

    /// Stops the proxy with SIGSTOP: connections to it stay open and
    /// nothing is answered, so calls already sent stay in flight.
    ///
    /// # Panics
    /// If the signal cannot be sent.
    pub fn freeze_proxy(&mut self) {
        self.proxy
            .signal(SIGSTOP)
            .unwrap_or_else(|e| panic!("SIGSTOP to the redis_proxy Envoy failed: {e}"));
        self.proxy_frozen = true;
    }

    /// Resumes a frozen proxy (SIGCONT).
    pub fn thaw_proxy(&mut self) {
        if self.proxy_frozen {
            let _ = self.proxy.signal(SIGCONT);
            self.proxy_frozen = false;
        }
    }

    /// Waits until every live node reports `cluster_state:ok` and every
    /// slot is served by a live master (after a failover: the replica has
    /// been promoted). Returns how long that took.
    ///
    /// # Errors
    /// If that does not happen within `timeout`.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<Duration, Error> {
        let started = Instant::now();
        wait_cluster_ok(&self.live_ports(), timeout)?;
        let live = self.live_ports();
        poll(timeout.saturating_sub(started.elapsed()), || {
            let covered: u32 = self
                .cluster_nodes()
                .iter()
                .filter(|n| n.master && !n.failed && live.contains(&n.port))
                .flat_map(|n| n.slots.iter())
                .map(|r| u32::from(r.end() - r.start()) + 1)
                .sum();
            (covered == u32::from(SLOTS)).then_some(())
        })
        .ok_or_else(|| {
            Error::new(format!(
                "slots not all served by live masters in {timeout:?}"
            ))
        })?;
        Ok(started.elapsed())
    }

    /// Every key on every live master (`KEYS *` on each: fine for the few
    /// thousand keys a test creates).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for port in self.master_ports() {
            if let Ok(reply @ Resp::Array(_)) = self.node_command(port, &[b"KEYS", b"*"]) {
                keys.extend(reply.bulk_items());
            }
        }
        keys.sort();
        keys
    }

    /// The sum over live nodes of one error prefix's count in
    /// `INFO errorstats` (`errorstat_CROSSSLOT:count=N`).
    pub fn error_count(&self, prefix: &str) -> u64 {
        let wanted = format!("errorstat_{prefix}:count=");
        self.live_ports()
            .iter()
            .filter_map(
                |port| match self.node_command(*port, &[b"INFO", b"errorstats"]) {
                    Ok(Resp::Bulk(Some(text))) => Some(String::from_utf8_lossy(&text).into_owned()),
                    _ => None,
                },
            )
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix(&wanted).and_then(|n| n.trim().parse().ok()))
                    .collect::<Vec<u64>>()
            })
            .sum()
    }

    /// The calls of `command` (lower case, e.g. `evalsha`) summed over live
    /// nodes, from `INFO commandstats`.
    pub fn calls_of(&self, command: &str) -> u64 {
        let wanted = format!("cmdstat_{command}:calls=");
        self.live_ports()
            .iter()
            .filter_map(
                |port| match self.node_command(*port, &[b"INFO", b"commandstats"]) {
                    Ok(Resp::Bulk(Some(text))) => Some(String::from_utf8_lossy(&text).into_owned()),
                    _ => None,
                },
            )
            .filter_map(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix(&wanted)
                        .and_then(|rest| rest.split(',').next())
                        .and_then(|n| n.parse::<u64>().ok())
                })
            })
            .sum()
    }

    /// The proxy's log so far.
    pub fn proxy_log(&self) -> String {
        self.proxy.log()
    }

    /// The log of the node at `port`.
    pub fn node_log(&self, port: u16) -> String {
        read_log(&self.dir.file(&format!("node-{port}.log")))
    }

    fn cluster_nodes(&self) -> Vec<NodeLine> {
        self.live_ports()
            .iter()
            .find_map(
                |port| match self.node_command(*port, &[b"CLUSTER", b"NODES"]) {
                    Ok(Resp::Bulk(Some(text))) => {
                        Some(parse_nodes(&String::from_utf8_lossy(&text)))
                    }
                    _ => None,
                },
            )
            .unwrap_or_default()
    }

    /// Writes and reads back one key per master through the proxy, so the
    /// proxy has learned the slot map and reaches every master.
    fn wait_proxy_serves_every_master(&self, timeout: Duration) -> Result<(), Error> {
        let probes = probe_keys();
        let port = self.proxy_port;
        poll(timeout, || {
            probes
                .iter()
                .all(|key| {
                    matches!(
                        resp::command(port, &[b"SET", key, b"1"], Duration::from_millis(500)),
                        Ok(Resp::Simple(ok)) if ok == "OK"
                    )
                })
                .then_some(())
        })
        .ok_or_else(|| {
            Error::new(format!(
                "redis_proxy on port {port} did not serve every master within {timeout:?}; log:\n{}",
                tail(&self.proxy.log(), 20)
            ))
        })?;
        for key in &probes {
            let _ = self.command(&[b"DEL", key]);
        }
        Ok(())
    }
}

/// The `masterauth` a cut replica is given: the master has no password,
/// so any value fails its `AUTH`.
const CUT_MASTERAUTH: &str = "replication-cut-by-the-test";

/// One node's replication state, from `INFO replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// `role:master`.
    pub master: bool,
    /// A replica's `master_link_status:up`; always true on a master.
    pub link_up: bool,
    /// `master_repl_offset`: on a master, the bytes of its replication
    /// stream so far; on a replica, the bytes of it processed.
    pub offset: u64,
    /// A master's `connected_slaves`.
    pub replicas: u32,
}

/// A master whose replica no longer receives its writes
/// ([`RedisCluster::cut_replication`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationCut {
    pub master: u16,
    pub replica: u16,
    /// The replica's offset when the link went down: it stays there.
    pub replica_offset: u64,
    /// The master's offset then.
    pub master_offset: u64,
}

fn parse_replication(text: &str) -> Option<Replication> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::to_owned)
        })
    };
    let master = field("role")? == "master";
    Some(Replication {
        master,
        link_up: master || field("master_link_status").as_deref() == Some("up"),
        offset: field("master_repl_offset")?.parse().ok()?,
        replicas: field("connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

/// A key in each third of the slot space: with `redis-cli`'s even split,
/// one per master.
fn probe_keys() -> Vec<Vec<u8>> {
    let thirds = [0..SLOTS / 3, SLOTS / 3..2 * SLOTS / 3, 2 * SLOTS / 3..SLOTS];
    thirds
        .iter()
        .map(|range| {
            (0u32..)
                .map(|i| format!("stack-probe-{i}").into_bytes())
                .find(|k| range.contains(&key_slot(k)))
                .unwrap_or_default()
        })
        .collect()
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, Default)]
struct NodeLine {
    id: String,
    /// The id of the master this node replicates (`-` for a master).
    master_id: String,
    port: u16,
    master: bool,
    failed: bool,
    slots: Vec<std::ops::RangeInclusive<u16>>,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master> <ping>
/// <pong> <epoch> <link> <slot or range>...`.
fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let addr = fields.get(1)?;
            let port = addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
            let flags = fields.get(2)?;
            let slots = fields
                .iter()
                .skip(8)
                .filter_map(|s| {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    Some(a.parse().ok()?..=b.parse().ok()?)
                })
                .collect();
            Some(NodeLine {
                id: fields.first()?.to_string(),
                master_id: fields.get(3)?.to_string(),
                port,
                master: flags.split(',').any(|f| f == "master"),
                failed: flags.split(',').any(|f| f == "fail" || f == "fail?"),
                slots,
            })
        })
        .collect()
}

/// The hash slot of `key`: CRC16 (XMODEM) of its `{…}` tag if it has a
/// non-empty one, else of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(key);
    crc16(tagged) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn spawn_node(server: &Path, dir: &RunDir, index: usize) -> Result<Node, Error> {
    let mut last = None;
    for _ in 0..3 {
        let port = free_port();
        let bus = free_port();
        let node_dir = dir.file(&format!("node-{index}"));
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", node_dir.display())))?;
        let args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            // A replica may take over however long ago it last heard from
            // its master: a test kills masters, it never partitions them.
            "--cluster-replica-validity-factor",
            "0",
            // Replicas sync at once instead of waiting 5 s for company.
            "--repl-diskless-sync-delay",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--dir",
            &node_dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = dir.file(&format!("node-{port}.log"));
        let mut proc = Proc::spawn("redis-server", server, &args, &node_dir, &log)?;
        let ready = poll(Duration::from_secs(10), || {
            if let Some(status) = proc.exited() {
                return Some(Err(format!("exited with {status}")));
            }
            match resp::command(port, &[b"PING"], Duration::from_millis(500)) {
                Ok(Resp::Simple(pong)) if pong == "PONG" => Some(Ok(())),
                _ => None,
            }
        })
        .unwrap_or_else(|| Err("did not answer PING within 10 s".to_owned()));
        match ready {
            Ok(()) => {
                return Ok(Node {
                    port,
                    proc: Some(proc),
                })
            }
            Err(why) => {
                proc.kill();
                last = Some(Error::new(format!(
                    "cluster node on port {port} {why}; log:\n{}",
                    tail(&proc.log(), 20)
                )));
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::new("cluster node did not start")))
}

/// `redis-cli --cluster create` with one replica per master.
fn create(cli: &Path, dir: &RunDir, nodes: &[Node]) -> Result<(), Error> {
    let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
    args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
    args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
    let log = dir.file("create.log");
    let mut proc = Proc::spawn("redis-cli", cli, &args, dir.path(), &log)?;
    let status = poll(START_TIMEOUT, || proc.exited());
    match status {
        Some(status) if status.success() => Ok(()),
        other => {
            proc.kill();
            Err(Error::new(format!(
                "redis-cli --cluster create {}; output:\n{}",
                other.map_or_else(|| "did not finish".to_owned(), |s| format!("exited {s}")),
                tail(&proc.log(), 20)
            )))
        }
    }
}

fn wait_cluster_ok(ports: &[u16], timeout: Duration) -> Result<(), Error> {
    poll(timeout, || {
        ports
            .iter()
            .all(|port| {
                matches!(
                    resp::command(*port, &[b"CLUSTER", b"INFO"], Duration::from_millis(500)),
                    Ok(Resp::Bulk(Some(text))) if text.starts_with(b"cluster_state:ok")
                )
            })
            .then_some(())
    })
    .ok_or_else(|| {
        Error::new(format!(
            "cluster nodes {ports:?} not all at cluster_state:ok within {timeout:?}"
        ))
    })
}

/// Waits until every replica among `ports` has finished its first sync
/// (`master_link_status:up`), so a master killed afterwards has a replica
/// holding its data.
fn wait_replicas_synced(ports: &[u16], timeout: Duration) -> Result<(), Error> {
    poll(timeout, || {
        ports
            .iter()
            .all(|port| {
                match resp::command(
                    *port,
                    &[b"INFO", b"replication"],
                    Duration::from_millis(500),
                ) {
                    Ok(Resp::Bulk(Some(text))) => {
                        let text = String::from_utf8_lossy(&text);
                        text.contains("role:master") || text.contains("master_link_status:up")
                    }
                    _ => false,
                }
            })
            .then_some(())
    })
    .ok_or_else(|| {
        Error::new(format!(
            "replicas among {ports:?} not synced within {timeout:?}"
        ))
    })
}

/// The proxy's bootstrap: a `redis_proxy` listener named `main` on a port
/// Envoy picks, routing everything to an `envoy.clusters.redis` cluster
/// seeded with `seeds`.
pub fn proxy_bootstrap(seeds: &[u16]) -> Value {
    let socket =
        |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    let endpoints: Vec<Value> = seeds
        .iter()
        .map(|p| json!({"endpoint": {"address": socket(*p)}}))
        .collect();
    json!({
        "admin": {"address": socket(0)},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": socket(0),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.redis_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
                        "stat_prefix": "redis",
                        "settings": {
                            "op_timeout": "1s",
                            "enable_redirection": true,
                            "enable_hashtagging": true,
                        },
                        "prefix_routes": {"catch_all_route": {"cluster": "redis_cluster"}},
                    },
                }]}],
            }],
            "clusters": [{
                "name": "redis_cluster",
                "connect_timeout": "1s",
                "lb_policy": "CLUSTER_PROVIDED",
                "cluster_type": {
                    "name": "envoy.clusters.redis",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.clusters.redis.v3.RedisClusterConfig",
                        "cluster_refresh_rate": "1s",
                        "cluster_refresh_timeout": "0.5s",
                        "failure_refresh_threshold": 1,
                        "redirect_refresh_threshold": 1,
                    },
                },
                "load_assignment": {
                    "cluster_name": "redis_cluster",
                    "endpoints": [{"lb_endpoints": endpoints}],
                },
            }],
        },
    })
}

fn spawn_proxy(dir: &RunDir, seeds: &[u16]) -> Result<(Proc, u16, u16), Error> {
    let binary = envoy_binary();
    let bootstrap = dir.file("proxy.json");
    let admin_file = dir.file("proxy-admin.addr");
    std::fs::write(&bootstrap, proxy_bootstrap(seeds).to_string())
        .map_err(|e| Error::new(format!("cannot write {}: {e}", bootstrap.display())))?;
    let args: Vec<String> = vec![
        "-c".into(),
        bootstrap.display().to_string(),
        "--concurrency".into(),
        "1".into(),
        "-l".into(),
        "info".into(),
        "--disable-hot-restart".into(),
        "--admin-address-path".into(),
        admin_file.display().to_string(),
    ];
    let log = dir.file("proxy.log");
    let mut proc = Proc::spawn("envoy redis_proxy", &binary, &args, dir.path(), &log)?;
    let ready = poll(START_TIMEOUT, || {
        if let Some(status) = proc.exited() {
            return Some(Err(format!("exited with {status}")));
        }
        let admin_port = std::fs::read_to_string(&admin_file)
            .ok()?
            .trim()
            .rsplit_once(':')?
            .1
            .parse::<u16>()
            .ok()?;
        let ready =
            http::get_with_timeout(admin_port, "/ready", &[], Duration::from_secs(1)).ok()?;
        if ready.status != 200 || ready.text().trim() != "LIVE" {
            return None;
        }
        Some(Ok((admin_port, listener_port(admin_port)?)))
    })
    .unwrap_or_else(|| Err(format!("not ready within {START_TIMEOUT:?}")));
    match ready {
        Ok((admin_port, port)) => Ok((proc, port, admin_port)),
        Err(why) => {
            proc.kill();
            Err(Error::new(format!(
                "redis_proxy Envoy {why}; log:\n{}",
                tail(&proc.log(), 30)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{}x"), key_slot(b"{}x"));
        assert_ne!(key_slot(b"{}x"), key_slot(b"x"));
        assert_eq!(key_slot(b"a{b}c{d}"), key_slot(b"b"));
    }

    #[test]
    fn cluster_nodes_lines_give_ports_roles_and_slots() {
        let text = "\
e1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 7000
e2 127.0.0.1:7002@17002 master,fail - 0 0 2 disconnected
e3 127.0.0.1:7003@17003 slave e1 0 0 1 connected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].port, 7001);
        assert!(nodes[0].master && !nodes[0].failed);
        assert_eq!(nodes[0].slots, vec![0..=5460, 7000..=7000]);
        assert!(nodes[1].failed);
        assert!(!nodes[2].master);
        assert_eq!(nodes[2].master_id, "e1");
        assert_eq!(nodes[0].id, "e1");
    }

    #[test]
    fn info_replication_gives_role_link_and_offset() {
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
master_link_status:down\r\nslave_repl_offset:1234\r\nmaster_repl_offset:1234\r\n";
        assert_eq!(
            parse_replication(replica),
            Some(Replication {
                master: false,
                link_up: false,
                offset: 1234,
                replicas: 0
            })
        );
        let master = "role:master\r\nconnected_slaves:1\r\nmaster_repl_offset:98\r\n";
        assert_eq!(
            parse_replication(master),
            Some(Replication {
                master: true,
                link_up: true,
                offset: 98,
                replicas: 1
            })
        );
        assert_eq!(parse_replication("role:master\r\n"), None);
    }
}
