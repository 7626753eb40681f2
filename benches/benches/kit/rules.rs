//! `rule_matching`: one limiter request (the full Redis path of
//! `limiter_request`) under configurations with 1, 10 and 100 `_rules_`
//! entries, each rule matching two domains: an exact and a wildcard one
//! (`inputs::rules_config`, `{n}_rules`), which the kit tries rule by rule,
//! or two exact ones (`inputs::exact_rules_config`, `{n}_exact_rules`),
//! which it looks up. Two
//! requests: one whose authority matches the last rule, so every rule is
//! tried, and one no rule matches, which falls to the global
//! configuration. The kit's filter beside the naive limiter, which reads
//! the authority as an owned, lowercased `String` and compares it with
//! each rule's patterns.

use crate::{assert_no_allocations, report_allocations};
use benches::drive::{KitDriver, NaiveDriver};
use benches::inputs::{
    exact_rules_config, rule_matching_authority, rule_matching_request, rules_config,
    MAX_BENCH_COUNT,
};
use criterion::{criterion_group, Criterion};
use std::hint::black_box;

/// A Redis stand-in answering 1, 2, ... MAX_BENCH_COUNT, 1, ...
fn cycling_counter() -> impl FnMut(&[u8]) -> i64 {
    let mut n = 0;
    move |_path| {
        n = n % MAX_BENCH_COUNT + 1;
        n
    }
}

fn bench_rules(c: &mut Criterion) {
    let mut group = c.benchmark_group("rule_matching");
    type Shape = fn(usize) -> String;
    let shapes: [(&str, Shape); 2] = [("rules", rules_config), ("exact_rules", exact_rules_config)];
    for (shape, config_of) in shapes {
        for rules in [1, 10, 100] {
            let config = config_of(rules);
            for (case, target) in [("last_rule", Some(rules)), ("no_rule_global", None)] {
                let authority = rule_matching_authority(target);
                let request = rule_matching_request(&authority);
                let name = format!("{rules}_{shape}/{case}");

                let mut kit = KitDriver::new(&config).unwrap();
                let mut redis = cycling_counter();
                assert_eq!(kit.request(&request, &mut redis), 200);
                assert_no_allocations(&format!("rule_matching/{name}/kit_filter"), || {
                    black_box(kit.request(black_box(&request), &mut redis));
                });
                group.bench_function(format!("{name}/kit_filter"), |b| {
                    b.iter(|| black_box(kit.request(black_box(&request), &mut redis)));
                });

                let mut naive = NaiveDriver::new(&config).unwrap();
                let mut redis = cycling_counter();
                assert_eq!(naive.request(&request, &mut redis), 200);
                report_allocations(&format!("rule_matching/{name}/naive_alloc"), || {
                    black_box(naive.request(black_box(&request), &mut redis));
                });
                group.bench_function(format!("{name}/naive_alloc"), |b| {
                    b.iter(|| black_box(naive.request(black_box(&request), &mut redis)));
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = rule_matching;
    config = crate::settings();
    targets = bench_rules
}
