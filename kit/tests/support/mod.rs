//! What the `FakeHost` tests of a streaming plugin share: a filter
//! configured to use webdis, and its counters read by their short names.

use kit::fake::FakeHost;
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
