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
//!   [`proxy`] implements it with proxy-wasm, [`fake`] scripts it in tests.
//! - [`plugin`]: the [`Plugin`] trait, [`Cx`] and the [`Flow`] a handler returns.
//! - [`config`]: borrowed views of the configuration, errors naming the field.
//! - [`redis`]: typed commands over RESP, sent natively (Higress) or through
//!   webdis (upstream Envoy).
//! - [`engine`]: the [`Filter`] that routes host events to the plugin.
//!
//! A plugin crate ends with [`export_plugin!`] and is built as a `cdylib`
//! for `wasm32-wasip1`.

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
pub mod proxy;
mod raw;
pub mod redis;
pub mod resp;
mod rules;

pub use calls::StreamId;
pub use config::{ConfigError, Field, Fields};
pub use engine::{Action, Filter};
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
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::__proxy_wasm::main! {{
            $crate::proxy::register::<$plugin>();
        }}
    };
}
