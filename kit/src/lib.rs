//! A zero-allocation toolkit for proxy-wasm HTTP filters.
//!
//! Write a [`Plugin`]: a name, a configuration type compiled once from the
//! plugin's JSON, a per-request state type, and the phases you handle. The
//! kit gives it what Higress's Go wrapper (`wasm-go`) gives Go plugins —
//! Higress `_rules_`, a Redis client with callbacks, local responses — with
//! no heap allocation per request in kit or plugin code, a module of about
//! a hundred kilobytes, and one build that loads on upstream Envoy as well as
//! Higress.
//!
//! The pieces, one module each:
//! - [`host`]: the one trait through which everything reaches the proxy;
//!   `proxy` (wasm builds only) implements it with proxy-wasm host calls,
//!   [`fake`] scripts it in tests.
//! - [`plugin`]: the [`Plugin`] trait, [`Cx`] and the [`Flow`] a handler returns.
//! - [`config`]: borrowed views of the configuration, errors naming the field.
//! - [`redis`]: typed commands over RESP, sent natively (Higress) or through
//!   webdis (upstream Envoy).
//! - [`engine`]: the [`Filter`] that routes host events to the plugin.
//!
//! A plugin crate ends with [`export_plugin!`] and is built as a `cdylib`
//! for `wasm32-wasip1`.
//!
//! # Bodies and `HeaderStopIteration`
//!
//! A plugin declares per direction how it wants the body
//! ([`Plugin::REQUEST_BODY`], [`Plugin::RESPONSE_BODY`]): [`BodyMode::Ignore`]
//! (the kit never waits for it), [`BodyMode::Stream`] (each chunk as it
//! passes; a chunk before the last may be held back) or [`BodyMode::Buffer`]
//! (the whole body once, in a handler that may still change the headers,
//! rewrite the body — the kit fixes `content-length` — call Redis or answer).
//! A request whose headers end the stream gets its buffered-body handler
//! right after the headers: it never waits for a body that will not come.
//!
//! Buffering with changeable headers needs the proxy to hold the headers
//! while the body is delivered: the kit answers the header callback with
//! `StopIteration`. Upstream Envoy honours that only when the Wasm
//! `PluginConfig` sets `allow_on_headers_stop_iteration: true` (Envoy 1.35+);
//! without it Envoy (and Higress, for ABI 0.2.1 modules) turns it into
//! stop-all and never delivers the body. The kit cannot read that setting,
//! so it finds out: a body arriving while headers are held proves it on; a
//! request held 100 ms with no body is let go, and three such requests
//! before any proof of the contrary prove it off. From then on the kit
//! lets headers go at once (dropping `content-length` when the plugin
//! declares [`Plugin::REWRITES_BODY`], so the proxy re-frames a rewritten
//! body) and buffers the body alone. Both settings work; **set
//! `allow_on_headers_stop_iteration: true`** to keep exact `content-length`
//! values and header changes made after the body, and to spare the first
//! buffered requests of each worker the 100 ms probe.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod calls;
pub mod config;
pub mod engine;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod host;
pub mod http;
mod io;
pub mod limits;
mod log;
pub mod plugin;
#[cfg(target_arch = "wasm32")]
pub mod proxy;
mod raw;
pub mod redis;
pub mod resp;
mod rules;

pub use calls::StreamId;
pub use config::{ConfigError, Field, Fields};
pub use engine::{Action, Filter, COUNTER_FLUSH};
pub use host::{Direction, Host, HostError, LogLevel};
pub use http::{HttpError, HttpReply, HttpRequest};
pub use io::Io;
pub use plugin::{BodyMode, Cx, Flow, Plugin, RedisUse, Responded, Setup};
pub use redis::{Redis, RedisError, Reply, Script, SetOptions};

#[doc(hidden)]
pub use proxy_wasm as __proxy_wasm;

/// Makes plugin type `$plugin` the module's filter.
///
/// # Examples
/// ```ignore
/// kit::export_plugin!(my_plugin::MyPlugin);
/// ```
///
/// Expands to nothing outside wasm builds, so a plugin crate's native tests
/// and benchmarks link without a proxy.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__proxy_wasm::main! {{
            $crate::proxy::register::<$plugin>();
        }}
    };
}
