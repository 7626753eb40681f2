//! What the `FakeHost` tests of a streaming plugin share: a filter
//! configured to use webdis, its counters read by their short names, and
//! the allocations of warm rounds.

use kit::fake::{allocations_during, FakeHost};
use kit::{Filter, Plugin};

/// A filter of plugin `P` on a fresh `FakeHost`, configured with nothing
/// but its webdis cluster.
///
/// # Panics
/// If `P` refuses that configuration.
pub fn filter<P: Plugin>() -> Filter<P, FakeHost> {
    let mut filter = Filter::new(FakeHost::new());
    filter
        .configure(br#"{"redis": {"webdis_cluster": "webdis"}}"#.to_vec())
        .unwrap();
    filter
}

/// Counter `name` of plugin `P` (published as `<P::NAME>.<name>`), once
/// the filter has flushed its counters to the host.
pub fn counter<P: Plugin>(filter: &mut Filter<P, FakeHost>, name: &str) -> u64 {
    filter.flush_counters();
    filter.host().counter(&format!("{}.{name}", P::NAME))
}

/// Runs `round` on `filter` 50 times to warm it up, then 1,000 times
/// more; the allocations of those 1,000.
pub fn allocations_in_warm_rounds<P: Plugin>(
    filter: &mut Filter<P, FakeHost>,
    mut round: impl FnMut(&mut Filter<P, FakeHost>),
) -> u64 {
    for _ in 0..50 {
        round(filter);
    }
    allocations_during(|| {
        for _ in 0..1_000 {
            round(filter);
        }
    })
}
