//! The virtual clock: the only time a module sees (proxy-wasm's current time
//! and WASI's wall and monotonic clocks), moved only by the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Nanoseconds since the Unix epoch, shared by the host and its WASI clocks.
#[derive(Debug, Clone)]
pub struct VirtualClock(Arc<AtomicU64>);

/// Where a new clock starts: 2026-01-01T00:00:00Z, so that calendar code in
/// a module sees a plausible date.
const START_NANOS: u64 = 1_767_225_600_000_000_000;

impl Default for VirtualClock {
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(START_NANOS)))
    }
}

impl VirtualClock {
    /// Nanoseconds since the epoch.
    pub fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Sets the clock to `nanos` since the epoch.
    pub fn set_nanos(&self, nanos: u64) {
        self.0.store(nanos, Ordering::SeqCst);
    }
}

impl wasmtime_wasi::HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

impl wasmtime_wasi::HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.now_nanos()
    }
}
