//! The plugin of the README's "Writing a plugin" section, kept compiling.
//! Build it for a proxy with
//! `cargo build --release --target wasm32-wasip1 -p proxy-wasm-kit --example quota`.

#![allow(missing_debug_implementations)] // kept identical to the README

use kit::{ConfigError, Cx, Fields, Flow, Host, Plugin, RedisError, RedisUse, Reply, Setup};

pub struct Quota;

pub struct Config<'cfg> {
    header: &'cfg str, // borrowed from the config bytes the kit keeps
    max: i64,
}

#[derive(Default)]
pub struct State; // per-request state: your own struct, pooled by the kit

impl Plugin for Quota {
    const NAME: &'static str = "quota";
    const REDIS: RedisUse = RedisUse::Required; // the kit reads the `redis` key
    type Config<'cfg> = Config<'cfg>;
    type State = State;

    fn configure<'cfg>(
        f: &Fields<'_, 'cfg>,
        _: &mut Setup<'_>,
    ) -> Result<Config<'cfg>, ConfigError> {
        Ok(Config {
            header: f.required_str("header")?,
            max: f.require("max")?.positive()? as i64,
        })
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _eos: bool) -> Flow {
        let cfg = cx.config;
        let Some(key) = cx.io.request_header(cfg.header) else {
            return Flow::Continue;
        };
        let key: kit::smallvec::SmallVec<[u8; 64]> = key.into(); // header bytes borrow host scratch
        match cx.io.redis().and_then(|r| r.incr(&key)) {
            Ok(()) => Flow::Pause, // the reply arrives in on_redis_reply
            Err(_) => Flow::Continue,
        }
    }

    fn on_redis_reply<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        reply: Result<Reply<'_>, RedisError>,
    ) -> Flow {
        match reply.ok().and_then(|r| r.as_i64()) {
            Some(n) if n > cx.config.max => cx.io.respond(429, &[], b"quota exceeded"),
            _ => Flow::Continue, // the kit resumes the request
        }
    }
}

kit::export_plugin!(Quota);
