//! An existing kind of plugin, written on the `proxy-wasm` crate as SDK
//! users write them (a `RootContext`, a boxed `HttpContext` per request,
//! serde for the configuration), that counts requests per client in Redis
//! through webdis with the kit's pieces instead of its own code:
//! - [`kit::resp::CommandBuf`] writes the webdis request path (each
//!   argument percent-encoded) and [`kit::resp::decode`] reads the RESP
//!   answer;
//! - [`kit::limits::window`] gives the fixed window and the decision;
//! - [`kit::limits::pattern::Pattern`] (Higress's `regexp:` subset) picks
//!   which clients are counted.
//!
//! [`count`] is that logic, plain Rust tested natively; `plugin` (wasm
//! builds only) is the SDK side. `e2e/tests/sdk_interop.rs` runs the module
//! in Envoy with Redis and webdis.

pub mod count;
#[cfg(target_arch = "wasm32")]
mod plugin;
