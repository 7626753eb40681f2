//! Per-client token quotas for LLM APIs, for Envoy and Higress.
//!
//! A token quota charges each client for the tokens an LLM API says its
//! requests used, in Redis, and refuses clients whose quota for the current
//! window is used up. [`TokenQuota`] is the plugin; the parts that need no
//! proxy live in their own modules:
//! - [`usage`]: finds the usage OpenAI (Chat Completions, Responses),
//!   Anthropic, Gemini and Ollama report, in a JSON body, a server-sent
//!   event stream or JSON lines, chunk by chunk, in one pass and without
//!   allocating.
//! - [`estimate`]: what an answer cut before any usage is charged.
//! - [`rewrite`]: makes streaming requests to the APIs that take it ask for
//!   usage (`stream_options.include_usage`), so streamed answers can be
//!   charged.
//!
//! Both read JSON as it streams: no tree, no recursion, nesting limited to
//! [`MAX_DEPTH`]. The rewriter validates every byte with a lexer; the
//! usage scanner skims what it does not need by structure alone, and
//! refuses structure it cannot trust rather than guess at it.

mod bytes;
pub mod estimate;
mod json;
mod quota;
pub mod rewrite;
pub mod usage;

pub use quota::{counter, Config, State, TokenQuota};

pub use json::MAX_DEPTH;
pub use rewrite::{include_usage, takes_include_usage, Rewrite};
pub use usage::{
    is_encoded, scan_json, scan_sse, Format, JsonScanner, Scan, Scanner, SseScanner, Usage,
};

kit::export_plugin!(TokenQuota, bodies);
