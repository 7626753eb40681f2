//! `TESTHOST_FUEL_TRACE=1`: where a module's instructions go.
//!
//! With the variable set, the host writes one line to stderr as each
//! callback starts and ends and as each host call is made, with the
//! module's wasm instructions (fuel) used so far: `fuel <n> enter <context>`,
//! `fuel <n> call <proxy_* name>`, `fuel <n> leave <context>`. The
//! differences between lines place a callback's instructions between the
//! host calls it makes, which is as close to a profile as fuel gets
//! without a profiler compiled into wasmtime. Off, it costs one cached
//! check per line it would write.

use std::sync::OnceLock;

/// Whether `TESTHOST_FUEL_TRACE` is set (to anything but `0`); read once.
pub(crate) fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TESTHOST_FUEL_TRACE").is_some_and(|v| v != "0"))
}

/// Writes one trace line: the fuel used so far, then what happened.
pub(crate) fn line(fuel_used: u64, what: std::fmt::Arguments<'_>) {
    eprintln!("fuel {fuel_used} {what}");
}
