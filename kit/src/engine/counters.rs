//! The plugin's counters and the kit's own: counted in memory, published
//! on the tick.
//!
//! Counting adds to a plain integer; the host calls that publish the sums
//! run on the engine's tick (and when the plugin stops), so a request pays
//! no VM crossing for its counters.

use crate::config::ConfigError;
use crate::host::Host;
use crate::plugin::Plugin;
use crate::raw;
use core::time::Duration;

/// How often counted events reach the proxy's counters.
///
/// Envoy itself flushes stats to sinks every 5 s by default, so a
/// one-second delay is not visible there.
pub const COUNTER_FLUSH: Duration = Duration::from_secs(1);

/// The counters of one configuration and the counts not yet published.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Host ids of the plugin's counters, then the kit's own.
    ids: Vec<u32>,
    /// Counts not yet published, by the index of `ids`.
    pub(super) pending: Vec<u64>,
    /// Index in `ids` of `<plugin>.body_over_limit`.
    over_limit: Option<usize>,
    /// Index in `ids` of `<plugin>.heap_allocations` (feature
    /// `heap-stats`, wasm builds).
    heap: Option<usize>,
}

impl Counters {
    /// Defines the plugin's counters on the host, named `<plugin>.<name>`,
    /// then the kit's own: `body_over_limit` when the plugin `buffers` a
    /// body, `heap_allocations` in heap-stats builds. Returns their ids,
    /// for [`Counters::install`].
    ///
    /// # Errors
    /// The host refused a counter; the error names it.
    pub(super) fn define<P: Plugin, H: Host>(
        host: &mut H,
        buffers: bool,
    ) -> Result<Vec<u32>, ConfigError> {
        let mut ids = Vec::with_capacity(P::COUNTERS.len() + 2);
        for name in P::COUNTERS
            .iter()
            .chain(body_counters(buffers))
            .chain(heap_counters())
        {
            let full = format!("{}.{}", P::NAME, name);
            let id = host
                .define_counter(&full)
                .map_err(|e| ConfigError::new("", format!("cannot define counter {full}: {e}")))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Counts from now on into the counters `ids` made by
    /// [`Counters::define`] with the same `buffers`.
    pub(super) fn install<P: Plugin>(&mut self, ids: Vec<u32>, buffers: bool) {
        self.over_limit = buffers.then_some(P::COUNTERS.len());
        self.heap = raw::HEAP_STATS.then_some(P::COUNTERS.len() + body_counters(buffers).len());
        self.pending = vec![0; ids.len()];
        self.ids = ids;
    }

    /// Whether there is any counter to publish.
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Publishes the counts made since the last flush, one host call per
    /// counter that moved.
    pub(super) fn flush<H: Host>(&mut self, host: &mut H) {
        if let Some(pending) = self.heap.and_then(|i| self.pending.get_mut(i)) {
            *pending = pending.saturating_add(raw::heap_allocations());
        }
        for (&id, pending) in self.ids.iter().zip(self.pending.iter_mut()) {
            if *pending > 0 {
                host.increment_counter(id, *pending);
                *pending = 0;
            }
        }
    }

    /// Counts a body over `max_body_bytes`.
    pub(super) fn count_over_limit(&mut self) {
        if let Some(pending) = self.over_limit.and_then(|i| self.pending.get_mut(i)) {
            *pending = pending.saturating_add(1);
        }
    }
}

/// The kit's counter of bodies over the limit, kept when a body is buffered.
fn body_counters(buffers: bool) -> &'static [&'static str] {
    if buffers {
        &["body_over_limit"]
    } else {
        &[]
    }
}

/// The kit's counter of heap allocations, in heap-stats builds.
fn heap_counters() -> &'static [&'static str] {
    if raw::HEAP_STATS {
        &["heap_allocations"]
    } else {
        &[]
    }
}
