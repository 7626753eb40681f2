//! A [`Filter`]'s configuration: the plugin's JSON parsed and compiled
//! once, with the keys the kit reads itself (`redis`, `max_body_bytes`,
//! `strict_config`), the counters defined on the host, and the buffers a
//! streamed body needs reserved, so requests never grow them.

use super::counters::Counters;
use super::{Filter, DEFAULT_MAX_BODY_BYTES, STREAM_PIECE};
use crate::config::{self, ConfigError, Fields, Path};
use crate::host::{Host, LogLevel};
use crate::plugin::{BodyMode, Plugin, RedisUse, Setup};
use crate::raw::Retained;
use crate::redis::RedisClient;
use crate::rules::Rules;

/// Keys of the configuration that the kit reads itself.
const KIT_KEYS: &[&str] = &["redis", "max_body_bytes", "strict_config"];

impl<P: Plugin, H: Host> Filter<P, H> {
    /// Parses and compiles `bytes`, keeping them for the plugin's life.
    ///
    /// # Errors
    /// The reason the configuration is refused. It is also logged, on one
    /// line, at error level; the previous configuration (if any) stays.
    pub fn configure(&mut self, bytes: Vec<u8>) -> Result<(), ConfigError> {
        self.log_level = self.host.log_level();
        match self.compile(bytes) {
            Ok(()) => {
                let ignored = self
                    .compiled
                    .as_ref()
                    .map_or(&[][..], |c| c.get().ignored());
                for i in ignored {
                    crate::log::write(
                        &mut self.host,
                        self.log_level,
                        LogLevel::Warn,
                        P::NAME,
                        format_args!(
                            "_rules_[{}]: {} is ignored: {} decides, as in Higress",
                            i.rule, i.key, i.decided_by
                        ),
                    );
                }
                crate::log::write(
                    &mut self.host,
                    self.log_level,
                    LogLevel::Info,
                    P::NAME,
                    format_args!("configured"),
                );
                Ok(())
            }
            Err(e) => {
                crate::log::write(
                    &mut self.host,
                    self.log_level,
                    LogLevel::Error,
                    P::NAME,
                    format_args!("invalid configuration: {e}"),
                );
                Err(e)
            }
        }
    }

    fn compile(&mut self, bytes: Vec<u8>) -> Result<(), ConfigError> {
        let host = &mut self.host;
        let mut redis = None;
        let mut max_body_bytes = DEFAULT_MAX_BODY_BYTES;
        let mut setup = Setup {
            now_nanos: host.now_nanos(),
            _marker: core::marker::PhantomData,
        };
        let mut strict = false;
        let (compiled, opened) = crate::config_keys::recording(|| {
            Retained::new(bytes, |view| {
                let tape = config::parse(view)?;
                let root = Path::Root;
                let top = Fields::top(&tape, &root)?;
                strict = top.bool_or("strict_config", false)?;
                if P::REDIS != RedisUse::None {
                    let field = top.require("redis")?;
                    redis = Some(RedisClient::configure(&field.object()?, host)?);
                }
                max_body_bytes = top.u64_or("max_body_bytes", DEFAULT_MAX_BODY_BYTES)?;
                if max_body_bytes == 0 {
                    return Err(top.error("max_body_bytes", "must be at least 1"));
                }
                Rules::compile(&top, KIT_KEYS, |fields| P::configure(fields, &mut setup))
            })
        });
        let compiled = compiled?;
        // Keys the plugin never asked for: a typo would otherwise leave a
        // default in force without a word. Higress configurations carry
        // keys for other plugins' features, so by default they only warn.
        let unknown = crate::config_keys::unknown(&opened);
        if let Some(first) = unknown.first().filter(|_| strict) {
            return Err(ConfigError::new(first.path.clone(), first.reason()));
        }
        for key in &unknown {
            crate::log::write(
                &mut self.host,
                self.log_level,
                LogLevel::Warn,
                P::NAME,
                format_args!("configuration key {}: {}; ignored", key.path, key.reason()),
            );
        }
        let host = &mut self.host;
        let buffers = P::REQUEST_BODY == BodyMode::Buffer || P::RESPONSE_BODY == BodyMode::Buffer;
        let counters = Counters::define::<P, H>(host, buffers)?;
        // Counts of the previous configuration belong to its counters.
        self.flush_counters();
        self.compiled = Some(compiled);
        if let Some(client) = redis.as_ref().filter(|_| P::REDIS == RedisUse::Counting) {
            self.increments.allocate();
            self.increments.set_cluster(client.cluster());
        }
        self.redis = redis;
        self.counters.install::<P>(counters, buffers);
        self.retick();
        self.max_body_bytes = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
        if P::REQUEST_BODY == BodyMode::Stream || P::RESPONSE_BODY == BodyMode::Stream {
            self.body.reserve(STREAM_PIECE);
            self.host.reserve_reads(STREAM_PIECE);
        }
        Ok(())
    }
}
