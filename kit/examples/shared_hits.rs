//! A kit plugin that reaches a host call the kit does not wrap: it counts
//! every request of the gateway in the proxy's shared data (one count for
//! all workers, updated with compare-and-swap) through the `proxy-wasm`
//! crate's `hostcalls`, and tells the client the count. The README's
//! "Backends" section shows it; build it with
//! `cargo build --release --target wasm32-wasip1 -p proxy-wasm-kit --features proxy-wasm --example shared_hits`.
//!
//! The host calls link only in wasm builds, hence the crate-wide `cfg`.
#![cfg(target_arch = "wasm32")]

use kit::proxy_wasm::hostcalls;
use kit::proxy_wasm::types::Status;
use kit::{ConfigError, Cx, Fields, Flow, Host, Plugin, Setup};

/// Counts requests in shared data.
#[derive(Debug)]
pub struct SharedHits;

/// Where the count lives.
#[derive(Debug)]
pub struct Config<'cfg> {
    key: &'cfg str,
}

impl Plugin for SharedHits {
    const NAME: &'static str = "shared_hits";
    type Config<'cfg> = Config<'cfg>;
    type State = ();

    fn configure<'cfg>(
        f: &Fields<'_, 'cfg>,
        _: &mut Setup<'_>,
    ) -> Result<Config<'cfg>, ConfigError> {
        Ok(Config {
            key: f.opt_str("shared_key")?.unwrap_or("shared_hits"),
        })
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _eos: bool) -> Flow {
        let hits = bump(cx.config.key);
        let mut text = itoa::Buffer::new();
        cx.io
            .set_request_header("x-shared-hits", text.format(hits).as_bytes());
        Flow::Continue
    }
}

/// Adds one to the count under `key`, retrying when another worker wrote
/// it in between; 0 when the host refuses.
fn bump(key: &str) -> u64 {
    for _ in 0..8 {
        let Ok((value, cas)) = hostcalls::get_shared_data(key) else {
            return 0;
        };
        let seen = value
            .and_then(|v| v.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let next = seen + 1;
        match hostcalls::set_shared_data(key, Some(&next.to_le_bytes()), cas) {
            Ok(()) => return next,
            Err(Status::CasMismatch) => continue,
            Err(_) => return 0,
        }
    }
    0
}

kit::export_plugin!(SharedHits);
