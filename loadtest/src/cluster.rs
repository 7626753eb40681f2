//! The limiter on a Redis Cluster (three masters, three replicas) behind
//! Envoy's `redis_proxy`, each of two gateways reaching it through its own
//! webdis: per-key accuracy with the keys spread over every master, and
//! the same run with a master killed (SIGKILL) while the counts climb.
//!
//! Per-key counts need per-request answers, which wrk does not give, so
//! these scenarios drive the gateways with their own clients (one
//! connection per request, a fixed number of clients at once) and record
//! each answer's key, status, send time and latency.
//!
//! The runs follow the counts, not the clock, so a slow or busy machine
//! changes how long they take, not what they measure: the failover run
//! kills a master once a third of the keys' allowance has been answered
//! (counts still climbing: an increment the dead master had acknowledged
//! but not yet passed to its replica then lets one more request through
//! later), and both runs end once every key has been refused at least
//! once (every key reached its limit), or at the cap ([`CAP`],
//! [`SMOKE_CAP`]). What the run counts
//! as over the limit is exactly the increments lost; without a failover
//! it must be 0. [`loss`] makes the failover lose increments on purpose
//! and measures what that costs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bench::Bench;
use crate::scenario::{Kind, Scenario};

mod clients;
mod loss;
mod nodes;

use clients::{
    allowed_per_key, answered_per_key, drive, drive_with, post, scenario_of_run, wait_for_window,
    Answer, Progress, CAP, KEYS, RECOVERY_BOUND, SMOKE_CAP, TAIL,
};
use nodes::{
    charged_per_key, config, gateway, quota_config, quota_gateway, start_cluster, TOKENS_PER_ANSWER,
};

pub use loss::{replication_loss, replication_loss_quota};

/// The accuracy run (`kill: false`) or the failover run (`kill: true`).
fn run(bench: &Bench, kill: bool) -> Scenario {
    let id = if kill {
        "cluster-failover"
    } else {
        "cluster-accuracy"
    };
    // Per key and minute; the smoke run's keys reach it within seconds.
    let limit: u64 = if bench.opts.smoke { 30 } else { 150 };
    let (mut cluster, webdis) = start_cluster(id);
    let rule = bench.rule(id);
    let config = config(&rule, limit);
    let gateways = [gateway(&webdis[0], &config), gateway(&webdis[1], &config)];
    let ports = [gateways[0].port(), gateways[1].port()];
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let cap = if bench.opts.smoke { SMOKE_CAP } else { CAP };
    let window = wait_for_window(cap);
    let title = if kill {
        format!(
            "cluster failover: limiter on two gateways, {KEYS} keys over 3 masters ({limit}/min each), \
             a master killed while the counts climb, failure_mode_deny: true"
        )
    } else {
        format!("cluster accuracy: limiter on two gateways, {KEYS} keys over 3 masters ({limit}/min each)")
    };
    println!("[loadtest] == {title}");
    let allowance = KEYS as u64 * limit;
    let (answers, elapsed, (reached, failover)) = drive(cap, &ports, |start, progress| {
        let failover = if kill {
            progress.wait_for(start, |p| {
                p.allowed.load(Ordering::Relaxed) >= allowance / 3
            });
            let victim = cluster.master_ports().first().copied();
            victim.map(|victim| {
                let killed_at = start.elapsed();
                cluster.kill_node(victim);
                println!(
                    "[loadtest]   {id}: killed master {victim} at {:.1} s, {} of {allowance} allowed",
                    killed_at.as_secs_f64(),
                    progress.allowed.load(Ordering::Relaxed)
                );
                (killed_at, cluster.wait_healthy(Duration::from_secs(30)))
            })
        } else {
            None
        };
        let reached = progress.wait_for(start, Progress::all_refused);
        std::thread::sleep(TAIL);
        (reached, failover)
    });
    let kind = if kill { Kind::Faults } else { Kind::Accuracy };
    let mut s = scenario_of_run(id, &title, kind, &answers, elapsed, cap, window);
    let allowed = allowed_per_key(&answers);
    let over: u64 = allowed.iter().map(|n| n.saturating_sub(limit)).sum();
    let short = allowed.iter().filter(|n| **n < limit).count();
    s.fact("requests allowed over the limit (all keys)", over);
    s.fact(
        "keys allowed more than their limit",
        allowed.iter().filter(|n| **n > limit).count(),
    );
    // A call the dying master ran whose answer never came back fails its
    // requests by the failure mode (503) though Redis counted them: in a
    // failover a key may fall short of its limit by its requests answered
    // 503, and by no more. Without a failover there is no 503, so every
    // key must reach its limit exactly.
    let failed = answered_per_key(&answers, 503);
    let unexplained = allowed
        .iter()
        .zip(&failed)
        .filter(|&(&n, &f)| n.saturating_add(f) < limit)
        .count();
    s.check(
        "every key reached its limit (in a failover: but for requests answered 503)",
        reached && unexplained == 0,
        format!(
            "{short} of {KEYS} keys allowed fewer than {limit}, {unexplained} of them by more than \
             their answers 503; every key refused once: {reached}"
        ),
    );
    let crossslot = cluster.error_count("CROSSSLOT") - crossslot_before;
    s.check(
        "no CROSSSLOT from the cluster",
        crossslot == 0,
        format!("{crossslot} CROSSSLOT errors"),
    );
    match failover {
        None => {
            s.check_answers(&[200, 429]);
            s.check(
                "no key allowed over its limit without a failover",
                over == 0 && short == 0,
                format!("{over} over the limit; allowed per key: {allowed:?}"),
            );
        }
        Some((killed_at, healthy)) => {
            s.check_answers(&[200, 429, 503]);
            match healthy {
                Ok(took) => s.fact(
                    "cluster healthy again (every slot on a live master)",
                    format!("{:.1} s after the kill", took.as_secs_f64()),
                ),
                Err(e) => s.check("the cluster failed over", false, e.to_string()),
            }
            let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
            let last = refused.iter().map(|a| a.sent + a.took).max();
            let before = answers
                .iter()
                .filter(|a| a.sent + a.took < killed_at)
                .all(|a| a.status == 200 || a.status == 429);
            s.check(
                "before the kill: no 503",
                before,
                format!("kill at {:.1} s", killed_at.as_secs_f64()),
            );
            s.check(
                "during the failover: the failure mode answers 503",
                !refused.is_empty(),
                format!("{} answers 503", refused.len()),
            );
            let recovered = last.map(|t| t.saturating_sub(killed_at));
            s.check(
                "recovered by itself: no 503 later than the bound after the kill",
                recovered.is_some_and(|t| t < RECOVERY_BOUND),
                format!(
                    "last 503 {:.1} s after the kill (bound {} s)",
                    recovered.unwrap_or_default().as_secs_f64(),
                    RECOVERY_BOUND.as_secs()
                ),
            );
            s.fact(
                "last 503 after the kill",
                format!("{:.1} s", recovered.unwrap_or_default().as_secs_f64()),
            );
        }
    }
    s
}

pub fn accuracy(bench: &mut Bench) -> Scenario {
    run(bench, false)
}

pub fn failover(bench: &mut Bench) -> Scenario {
    run(bench, true)
}

/// The token quota on the cluster under load: two gateways in front of the
/// JSON upstream, 48 keys with a quota of 40 answers' tokens a minute
/// each (10 with `--smoke`), until every key has been refused once. Checks
/// that each key's counter holds exactly the tokens of the answers it let
/// through (the quota is read at the request and charged at the end, so
/// requests in flight when it runs out may pass it; what must be exact is
/// the charge), and no CROSSSLOT.
pub fn token_quota(bench: &mut Bench) -> Scenario {
    let id = "cluster-token-quota";
    let answers_each: u64 = if bench.opts.smoke { 10 } else { 40 };
    let quota = answers_each * TOKENS_PER_ANSWER;
    let cap = if bench.opts.smoke { SMOKE_CAP } else { CAP };
    let (cluster, webdis) = start_cluster(id);
    let rule = bench.rule(id);
    let config = quota_config(&rule, quota);
    let gateways = [
        quota_gateway(bench, &webdis[0], &config),
        quota_gateway(bench, &webdis[1], &config),
    ];
    let ports = [gateways[0].port(), gateways[1].port()];
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let window = wait_for_window(cap);
    let title = format!(
        "cluster: token quota on two gateways, {KEYS} keys over 3 masters ({quota} tokens/min each), chat POSTs, JSON answers"
    );
    println!("[loadtest] == {title}");
    let (answers, elapsed, reached) = drive_with(cap, &ports, post, |start, progress| {
        let reached = progress.wait_for(start, Progress::all_refused);
        std::thread::sleep(TAIL);
        reached
    });
    let mut s = scenario_of_run(id, &title, Kind::Accuracy, &answers, elapsed, cap, window);
    s.check_answers(&[200, 429]);
    s.check(
        "every key used up its quota (refused once)",
        reached,
        format!("within {} s", cap.as_secs()),
    );
    // Let the charges of the last answers land.
    std::thread::sleep(Duration::from_millis(500));
    let charged = charged_per_key(&cluster, &rule);
    let allowed = allowed_per_key(&answers);
    let wrong: Vec<String> = allowed
        .iter()
        .enumerate()
        .filter(|(k, n)| charged.get(k).copied().unwrap_or(0) != **n * TOKENS_PER_ANSWER)
        .map(|(k, n)| {
            format!(
                "key-{k}: {} tokens for {n} answers",
                charged.get(&k).copied().unwrap_or(0)
            )
        })
        .collect();
    let most = allowed.iter().max().copied().unwrap_or(0);
    s.fact(
        "answers 200 per key",
        format!(
            "{} to {most} (quota: {answers_each} answers' tokens)",
            allowed.iter().min().copied().unwrap_or(0)
        ),
    );
    s.check(
        "each key's counter holds exactly the tokens of its answers 200",
        wrong.is_empty() && charged.len() == KEYS,
        if wrong.is_empty() {
            format!(
                "{KEYS} of {KEYS} keys exact ({} tokens in all)",
                charged.values().sum::<u64>()
            )
        } else {
            wrong.join("; ")
        },
    );
    let crossslot = cluster.error_count("CROSSSLOT") - crossslot_before;
    s.check(
        "no CROSSSLOT from the cluster",
        crossslot == 0,
        format!("{crossslot} CROSSSLOT errors"),
    );
    s
}
