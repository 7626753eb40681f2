//! A zero-allocation toolkit for proxy-wasm HTTP filters.
//!
//! Write a [`Plugin`]: a name, a configuration type compiled once from the
//! plugin's JSON, a per-request state type, and the phases you handle. The
//! kit gives it what Higress's Go wrapper (`wasm-go`) gives Go plugins —
//! Higress `_rules_`, a Redis client with callbacks, local responses — with
//! no heap allocation per request in kit or plugin code, a small module
//! (README "Module size"), and one build that loads on upstream Envoy as
//! well as Higress.
//!
//! The pieces, one module each:
//! - [`host`]: the one trait through which everything reaches the proxy;
//!   `proxy` (wasm builds only) implements it with the proxy-wasm ABI's host
//!   calls, [`fake`] scripts it in tests.
//! - [`plugin`]: the [`Plugin`] trait, [`Cx`] and the [`Flow`] a handler returns.
//! - [`config`]: borrowed views of the configuration, errors naming the field.
//! - [`redis`]: typed commands over RESP, sent natively (Higress) or through
//!   webdis (upstream Envoy).
//! - [`engine`]: the [`Filter`] that routes host events to the plugin.
//! - [`ending`]: how a request ended, for [`Plugin::on_stream_end`]; with
//!   [`Io::root_redis`] and [`Plugin::on_root_reply`], what must still
//!   happen after a request is gone (calls the root context owns).
//! - [`dispatcher`]: routes the proxy's callbacks, by context id, to the
//!   [`Filter`] of each root context; [`export_plugin!`] defines the wasm
//!   exports that call it, and only those the plugin needs.
//!
//! A plugin crate ends with [`export_plugin!`] and is built as a `cdylib`
//! for `wasm32-wasip1`.
//!
//! # Floors
//!
//! The kit's files stand on floors: a file imports from its own floor and
//! the floors below, never from above, and files never import each other
//! in a circle. `scripts/kit_layers.py` reads this list and checks both in
//! CI (test code and the `fake` instruments stand above everything and are
//! not checked). A name stands for its file, or for every file of its
//! folder.
//!
//! 1. ABI and host seam: `abi`, `host`, `raw`, `log`, `sdk_host`
//! 2. Wire formats and configuration: `hex`, `key_words`, `resp`, `config_json`, `config_keys`, `config`, `authority`, `http`, `pattern`
//! 3. Calls to Redis and HTTP: `calls`, `counter_key`, `redis`, `increments`
//! 4. One request's I/O: `flow`, `ending`, `io`
//! 5. Plugin API: `plugin`
//! 6. Rules and limits: `rules`, `limits`
//! 7. Engine: `engine`
//! 8. Dispatch by context id: `dispatcher`, `sdk_dispatch`
//! 9. The proxy and outside views: `proxy`, `fuzzing`
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
// Unsafe code lives in `raw` alone, the one module allowed it.
#![deny(unsafe_code)]
// Every public item says what it is for: users read the kit from its docs.
#![deny(missing_docs)]

// The host's numbers outside `proxy` and `raw` are only a few statuses, so
// most codes go unused in builds without the kit's own ABI layer.
#[cfg_attr(
    not(all(target_arch = "wasm32", not(feature = "proxy-wasm"))),
    allow(dead_code)
)]
mod abi;
mod authority;
mod calls;
pub mod config;
// The configuration parser unless the `simd-json` feature is on; its tests
// compare it with simd-json either way.
#[cfg_attr(feature = "simd-json", allow(dead_code))]
mod config_json;
mod config_keys;
mod counter_key;
pub mod dispatcher;
pub mod ending;
pub mod engine;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fake"))]
pub mod fake_redis;
#[cfg(any(test, feature = "fake"))]
pub mod fake_request;
mod flow;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hex;
pub mod host;
pub mod http;
pub mod increments;
mod io;
mod key_words;
pub mod limits;
mod log;
pub mod pattern;
pub mod plugin;
#[cfg(all(target_arch = "wasm32", not(feature = "proxy-wasm")))]
pub mod proxy;
#[allow(unsafe_code)]
mod raw;
pub mod redis;
pub mod resp;
mod rules;
#[cfg(all(target_arch = "wasm32", feature = "proxy-wasm"))]
pub mod sdk_dispatch;
#[cfg(all(target_arch = "wasm32", feature = "proxy-wasm"))]
pub mod sdk_host;

/// The standard Rust SDK, with feature `proxy-wasm`: a kit plugin reaches
/// the host calls the kit does not wrap (shared data, queues, gRPC,
/// foreign functions) through `kit::proxy_wasm::hostcalls`, on the same
/// ABI layer the kit then runs on.
#[cfg(feature = "proxy-wasm")]
pub use proxy_wasm;

#[cfg(all(feature = "proxy-wasm", feature = "higress"))]
compile_error!(
    "kit features `proxy-wasm` and `higress` do not combine: the SDK cannot read Higress's Redis reply buffer; use webdis"
);

pub use calls::{StreamId, ADOPTED};
pub use config::{ConfigError, Field, Fields};
pub use ending::{EndCause, StreamEnd};
pub use engine::{Action, Filter, COUNTER_FLUSH};
pub use host::{Direction, Host, HostError, LogLevel};
pub use http::{HttpError, HttpReply, HttpRequest};
pub use increments::{Count, CountError, Repair, COUNT_SCRIPT};
pub use io::{Io, RootIo};
pub use plugin::{BodyMode, Cx, Flow, Plugin, RedisUse, Responded, Setup};
pub use redis::{Redis, RedisError, Reply, Script, SetOptions, NATIVE_TRANSPORT};

/// The small-vector crate the kit's APIs use: a plugin names it to keep
/// bytes it borrowed from the host (a header value, a key) without a heap
/// allocation, with no dependency of its own to keep in step.
pub use smallvec;

/// The repository README's Rust examples, compiled as doctests so that the
/// example a new plugin author copies first always builds.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

/// Makes plugin type `$plugin` the module's filter: defines the wasm
/// exports the proxy calls.
///
/// Only the callbacks the plugin needs are exported, because the proxy
/// enters the VM for every exported callback of every request. A plugin
/// that reads bodies (a [`BodyMode`] other than `Ignore` in either
/// direction) says so with `bodies`; a mismatch either way fails to
/// compile.
///
/// # Examples
/// ```ignore
/// kit::export_plugin!(my_plugin::HeaderCheck);
/// kit::export_plugin!(my_plugin::BodyRewrite, bodies);
/// ```
///
/// Expands to nothing but the check outside wasm builds, so a plugin
/// crate's native tests and benchmarks link without a proxy.
///
/// With the kit's feature `proxy-wasm` the same invocation builds the
/// module on the `proxy-wasm` crate instead: the SDK defines every export,
/// and the module's `_initialize` installs the plugin in the SDK's
/// dispatcher (`sdk_dispatch`; README "Backends").
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = ::core::assert!(
            !$crate::plugin::reads_bodies::<$plugin>(),
            "this plugin reads bodies: export it with `kit::export_plugin!(Plugin, bodies)`"
        );
        $crate::__exports!($plugin);
    };
    ($plugin:ty, bodies) => {
        const _: () = ::core::assert!(
            $crate::plugin::reads_bodies::<$plugin>(),
            "this plugin ignores bodies: export it with `kit::export_plugin!(Plugin)`"
        );
        $crate::__exports!($plugin);
        $crate::__body_exports!();
    };
}

/// The exports of every plugin; the macros share the module's state,
/// `__KIT_MODULE`, by name.
#[cfg(not(feature = "proxy-wasm"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __exports {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        ::std::thread_local! {
            static __KIT_MODULE: $crate::proxy::Module<$plugin> =
                const { ::core::cell::RefCell::new($crate::dispatcher::Dispatcher::new()) };
        }

        /// Runs `f` on the module's state; a callback that arrives while
        /// another one runs (a local reply's response headers, delivered
        /// from inside the request-headers callback) lets the stream go on.
        #[cfg(target_arch = "wasm32")]
        fn __kit_module<R>(
            otherwise: R,
            f: impl FnOnce(&mut $crate::dispatcher::Dispatcher<$plugin, $crate::proxy::ProxyHost>) -> R,
        ) -> R {
            __KIT_MODULE.with(|module| match module.try_borrow_mut() {
                Ok(mut module) => f(&mut module),
                Err(_) => otherwise,
            })
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
            __kit_module((), |m| {
                m.on_context_create(context_id, parent_id, $crate::proxy::ProxyHost::default)
            })
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_configure(root_id: u32, _size: usize) -> u32 {
            let bytes = $crate::proxy::configuration();
            __kit_module(0, |m| u32::from(m.on_configure(root_id, bytes)))
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_tick(root_id: u32) {
            __kit_module((), |m| m.on_tick(root_id))
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_delete(context_id: u32) {
            __kit_module((), |m| m.on_delete(context_id))
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_request_headers(
            context_id: u32,
            _headers: usize,
            end_of_stream: u32,
        ) -> u32 {
            __kit_module(0, |m| m.on_request_headers(context_id, end_of_stream != 0))
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_response_headers(
            context_id: u32,
            _headers: usize,
            end_of_stream: u32,
        ) -> u32 {
            __kit_module(0, |m| m.on_response_headers(context_id, end_of_stream != 0))
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_http_call_response(
            context_id: u32,
            token: u32,
            headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            __kit_module((), |m| {
                m.on_http_call_response(context_id, token, headers, body_size)
            })
        }

        $crate::__redis_export!();
    };
}

/// Body and trailer callbacks, for plugins that read bodies.
#[cfg(not(feature = "proxy-wasm"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __body_exports {
    () => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_request_body(
            context_id: u32,
            size: usize,
            end_of_stream: u32,
        ) -> u32 {
            __kit_module(0, |m| {
                m.on_request_body(context_id, size, end_of_stream != 0)
            })
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_response_body(
            context_id: u32,
            size: usize,
            end_of_stream: u32,
        ) -> u32 {
            __kit_module(0, |m| {
                m.on_response_body(context_id, size, end_of_stream != 0)
            })
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_request_trailers(context_id: u32, _trailers: usize) -> u32 {
            __kit_module(0, |m| m.on_request_trailers(context_id))
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_response_trailers(context_id: u32, _trailers: usize) -> u32 {
            __kit_module(0, |m| m.on_response_trailers(context_id))
        }
    };
}

/// With feature `proxy-wasm` the SDK defines every export; the module's
/// `_initialize` installs the plugin in the SDK's dispatcher.
#[cfg(feature = "proxy-wasm")]
#[doc(hidden)]
#[macro_export]
macro_rules! __exports {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        $crate::proxy_wasm::main! {{
            $crate::sdk_dispatch::install::<$plugin>();
        }}
    };
}

/// With feature `proxy-wasm` the SDK exports the body callbacks already.
#[cfg(feature = "proxy-wasm")]
#[doc(hidden)]
#[macro_export]
macro_rules! __body_exports {
    () => {};
}

/// Higress's Redis reply callback, in `higress` builds only: upstream
/// Envoy loads modules that export it, but the kit's feature decides.
#[cfg(feature = "higress")]
#[doc(hidden)]
#[macro_export]
macro_rules! __redis_export {
    () => {
        /// Higress calls this on the root context when a Redis reply
        /// (status 0) or failure (status 1: timeout, reset, connect
        /// failure) arrives.
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_redis_call_response(
            root_id: u32,
            token: u32,
            status: u32,
            size: usize,
        ) {
            __kit_module((), |m| {
                m.on_redis_call_response(root_id, token, status, size)
            })
        }
    };
}

#[cfg(not(feature = "higress"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __redis_export {
    () => {};
}
