//! The replication-loss window of a failover: one master's replication
//! link cut while the load runs on, then the master killed, so its replica
//! takes over without what the master acknowledged since the cut. What
//! that costs the limiter (requests allowed over the limit) and the token
//! quota (charges lost), on the killed master's keys and on the others.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::clients::{
    allowed_per_key, drive_with, get, post, scenario_of_run, wait_for_window, Answer, Progress,
    CAP, KEYS, RECOVERY_BOUND, SMOKE_CAP, TAIL,
};
use super::nodes::{
    charged_per_key, config, counters_on, gateway, quota_config, quota_gateway, start_cluster,
    TOKENS_PER_ANSWER,
};
use crate::bench::Bench;
use crate::scenario::{Kind, Scenario};
use stack::RedisCluster;

/// What the deciding thread of a replication-loss run did.
struct LossWindow {
    cut: stack::cluster::ReplicationCut,
    cut_at: Duration,
    killed_at: Duration,
    /// The killed master's counters of the rule, summed, at the cut and
    /// just before the kill: their difference is what it acknowledged
    /// that its replica never received.
    counted_at_cut: u64,
    counted_at_kill: u64,
    /// Bytes of replication stream the replica lacked at the kill.
    lag_bytes: u64,
    healthy: Result<Duration, String>,
}

/// The sum of `rule`'s counters on the node at `port`.
fn counted_on(cluster: &RedisCluster, port: u16, rule: &str) -> u64 {
    counters_on(cluster, port, rule)
        .iter()
        .map(|(_, v)| v)
        .sum()
}

/// The replication-loss run for the limiter (`quota: false`: 150 requests
/// a minute per key, 30 with `--smoke`) or the token quota (`true`: 40
/// answers' tokens, 10 with `--smoke`): two gateways, [`KEYS`] keys,
/// [`CLIENTS`] clients. Once a quarter of the allowance has been answered
/// 200, the replication link of one master is cut
/// ([`RedisCluster::cut_replication`]); once half has, that master is
/// killed (SIGKILL) and its replica, which has nothing written since the
/// cut, takes over; then until every key has been refused once.
fn replication_loss_run(bench: &Bench, quota: bool) -> Scenario {
    let id = if quota {
        "cluster-replication-loss-quota"
    } else {
        "cluster-replication-loss"
    };
    let per_key: u64 = match (quota, bench.opts.smoke) {
        (false, false) => 150,
        (false, true) => 30,
        (true, false) => 40,
        (true, true) => 10,
    };
    let (mut cluster, webdis) = start_cluster(id);
    let rule = bench.rule(id);
    let gateways = if quota {
        let config = quota_config(&rule, per_key * TOKENS_PER_ANSWER);
        [
            quota_gateway(bench, &webdis[0], &config),
            quota_gateway(bench, &webdis[1], &config),
        ]
    } else {
        let config = config(&rule, per_key);
        [gateway(&webdis[0], &config), gateway(&webdis[1], &config)]
    };
    let ports = [gateways[0].port(), gateways[1].port()];
    let cap = if bench.opts.smoke { SMOKE_CAP } else { CAP };
    let window = wait_for_window(cap);
    let title = if quota {
        format!(
            "cluster replication loss: token quota on two gateways, {KEYS} keys over 3 masters \
             ({} tokens/min each, {TOKENS_PER_ANSWER} per answer), one master's replication link cut, \
             then the master killed",
            per_key * TOKENS_PER_ANSWER
        )
    } else {
        format!(
            "cluster replication loss: limiter on two gateways, {KEYS} keys over 3 masters \
             ({per_key}/min each), one master's replication link cut, then the master killed"
        )
    };
    println!("[loadtest] == {title}");
    let allowance = KEYS as u64 * per_key;
    let send = if quota { post } else { get };
    let (answers, elapsed, (reached, loss)) = drive_with(cap, &ports, send, |start, progress| {
        let allowed = |p: &Progress| p.allowed.load(Ordering::Relaxed);
        progress.wait_for(start, |p| allowed(p) >= allowance / 4);
        let loss = cluster
                .master_ports()
                .first()
                .copied()
                .ok_or_else(|| "no live master".to_owned())
                .and_then(|victim| cluster.cut_replication(victim).map_err(|e| e.to_string()))
                .map(|cut| {
                    let cut_at = start.elapsed();
                    let counted_at_cut = counted_on(&cluster, cut.master, &rule);
                    println!(
                        "[loadtest]   {id}: cut the link of master {} to replica {} at {:.1} s, {} of {allowance} allowed",
                        cut.master,
                        cut.replica,
                        cut_at.as_secs_f64(),
                        allowed(progress)
                    );
                    progress.wait_for(start, |p| allowed(p) >= allowance / 2);
                    let counted_at_kill = counted_on(&cluster, cut.master, &rule);
                    let lag_bytes = match (cluster.replication(cut.master), cluster.replication(cut.replica)) {
                        (Some(m), Some(r)) => m.offset.saturating_sub(r.offset),
                        _ => 0,
                    };
                    let killed_at = start.elapsed();
                    cluster.kill_node(cut.master);
                    println!(
                        "[loadtest]   {id}: killed master {} at {:.1} s, {} of {allowance} allowed",
                        cut.master,
                        killed_at.as_secs_f64(),
                        allowed(progress)
                    );
                    let healthy = cluster.wait_healthy(Duration::from_secs(30));
                    let restored = cluster.restore_replication(&cut);
                    LossWindow {
                        cut,
                        cut_at,
                        killed_at,
                        counted_at_cut,
                        counted_at_kill,
                        lag_bytes,
                        healthy: healthy
                            .and_then(|t| restored.map(|()| t))
                            .map_err(|e| e.to_string()),
                    }
                });
        let reached = progress.wait_for(start, Progress::all_refused);
        std::thread::sleep(TAIL);
        (reached, loss)
    });
    let mut s = scenario_of_run(id, &title, Kind::Faults, &answers, elapsed, cap, window);
    s.check(
        "every key was refused once",
        reached,
        format!("within {} s", cap.as_secs()),
    );
    s.check_answers(&[200, 429, 503]);
    let loss = match loss {
        Ok(loss) => loss,
        Err(e) => {
            s.check("the replication link was cut", false, e);
            return s;
        }
    };
    match &loss.healthy {
        Ok(took) => s.fact(
            "cluster healthy again (every slot on a live master)",
            format!("{:.1} s after the kill", took.as_secs_f64()),
        ),
        Err(e) => s.check("the cluster failed over", false, e.clone()),
    }
    s.fact(
        "replication link cut",
        format!(
            "{:.1} s into the run, {:.1} s before the kill",
            loss.cut_at.as_secs_f64(),
            (loss.killed_at - loss.cut_at).as_secs_f64()
        ),
    );
    s.fact(
        "replication stream the replica lacked at the kill",
        format!("{} bytes", loss.lag_bytes),
    );
    let lost = loss.counted_at_kill.saturating_sub(loss.counted_at_cut);
    s.fact(
        if quota {
            "tokens the killed master charged after the cut (lost with it)"
        } else {
            "increments the killed master acknowledged after the cut (lost with it)"
        },
        lost,
    );
    // The keys of the killed master's slots are on its replica now.
    let on_victim: Vec<usize> = counters_on(&cluster, loss.cut.replica, &rule)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let allowed = allowed_per_key(&answers);
    let split = |per_key_value: &dyn Fn(usize) -> u64| {
        let (mut victim, mut others) = (0u64, 0u64);
        for key in 0..KEYS {
            if on_victim.contains(&key) {
                victim += per_key_value(key);
            } else {
                others += per_key_value(key);
            }
        }
        (victim, others)
    };
    let over_of = |key: usize| {
        allowed
            .get(key)
            .copied()
            .unwrap_or(0)
            .saturating_sub(per_key)
    };
    let (over_victim, over_others) = split(&over_of);
    s.fact("keys on the killed master", on_victim.len());
    if quota {
        // Time to let the charges of the last answers land.
        std::thread::sleep(Duration::from_millis(500));
        let charged = charged_per_key(&cluster, &rule);
        let lost_of = |key: usize| {
            let owed = allowed.get(key).copied().unwrap_or(0) * TOKENS_PER_ANSWER;
            owed.saturating_sub(charged.get(&key).copied().unwrap_or(0))
        };
        let (lost_victim, lost_others) = split(&lost_of);
        s.fact(
            "tokens of answers 200 missing from the counters (charges lost)",
            format!(
                "{lost_victim} on the killed master's {} keys, {lost_others} on the others",
                on_victim.len()
            ),
        );
        s.fact(
            "answers 200 over the quota",
            format!(
                "{over_victim} on the killed master's keys, {over_others} on the others \
                 (the quota is read at the request and charged at the end: answers in flight \
                 when it runs out pass it, on any master)"
            ),
        );
        // A charge of another master's key is lost only when its call
        // failed during the failover (webdis's connections to the proxy
        // answer in order, so a call behind one to the dead master waits
        // with it past the plugin's timeout): at most the answers of those
        // keys that ended then.
        let last_503 = answers
            .iter()
            .filter(|a| a.status == 503)
            .map(|a| a.sent + a.took)
            .max()
            .unwrap_or(loss.killed_at);
        let ended_in_failover = answers
            .iter()
            .filter(|a| a.status == 200 && !on_victim.contains(&a.key))
            .filter(|a| (loss.killed_at..=last_503).contains(&(a.sent + a.took)))
            .count() as u64;
        s.check(
            "charges lost on the other masters' keys only for answers that ended during the failover",
            lost_others <= ended_in_failover * TOKENS_PER_ANSWER,
            format!(
                "{lost_others} tokens lost; {ended_in_failover} of their answers 200 ended between the kill and the last 503"
            ),
        );
        s.check(
            "the loss window was exercised: charges were lost",
            lost_victim > 0,
            format!("{lost_victim} tokens"),
        );
    } else {
        s.fact(
            "requests allowed over the limit (all keys)",
            over_victim + over_others,
        );
        s.fact(
            "requests allowed over the limit, the killed master's keys",
            format!("{over_victim} ({} keys)", on_victim.len()),
        );
        s.check(
            "no key of a surviving master allowed over its limit",
            over_others == 0,
            format!("{over_others} over the limit on the other masters' keys"),
        );
        s.check(
            "the loss window was exercised: requests allowed over the limit",
            over_victim > 0,
            format!("{over_victim} over the limit"),
        );
    }
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    let last = refused
        .iter()
        .map(|a| (a.sent + a.took).saturating_sub(loss.killed_at))
        .max()
        .unwrap_or_default();
    s.check(
        "recovered by itself: no 503 later than the bound after the kill",
        last < RECOVERY_BOUND,
        format!(
            "{} answers 503, the last {:.1} s after the kill (bound {} s)",
            refused.len(),
            last.as_secs_f64(),
            RECOVERY_BOUND.as_secs()
        ),
    );
    s
}

/// The limiter across a failover whose replica missed the master's last
/// increments (see [`replication_loss_run`]).
pub fn replication_loss(bench: &mut Bench) -> Scenario {
    replication_loss_run(bench, false)
}

/// The token quota across such a failover.
pub fn replication_loss_quota(bench: &mut Bench) -> Scenario {
    replication_loss_run(bench, true)
}
