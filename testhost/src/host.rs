//! Loading a proxy-wasm module and starting its root context the way
//! Higress does, then the calls a test makes between requests (ticks,
//! clock, metrics, logs, memory, fuel).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, Instance, Linker, Module, Store, TypedFunc, Val};
use wasmtime_wasi::{Deterministic, WasiCtxBuilder};

use crate::abi::AbiVersion;
use crate::clock::VirtualClock;
use crate::redis::{Delivery, RedisCall};
use crate::state::{CallbackData, HostState, HttpAnswer, LogLine, Metric};
use crate::{fuel_trace, host_calls, stream_calls};

/// A failure to load or start a module, or a trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<wasmtime::Error> for Error {
    fn from(e: wasmtime::Error) -> Self {
        Error(format!("{e:#}"))
    }
}

/// How a host is set up before the module starts.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Redis clusters the module may init: bare name -> address.
    pub redis: Vec<(String, SocketAddr)>,
    /// `http_call` upstream clusters and their scripted answers, in order.
    /// A cluster not listed is unknown (the call is refused, as in Envoy).
    pub http: BTreeMap<String, Vec<HttpAnswer>>,
    /// Host-wide properties (`route_name`, `source.address`, ...), dotted
    /// names; defaults are filled in for those not given.
    pub properties: BTreeMap<String, Vec<u8>>,
    pub vm_config: Vec<u8>,
    /// 0 trace .. 5 critical; Envoy's default is 2 (info).
    pub log_level: u32,
    /// Share one clock between hosts to keep them in step.
    pub clock: VirtualClock,
    /// Seeds WASI's random numbers (mixed with the number of hosts made
    /// before in this process), so that a Go module (request UUIDs, map
    /// order) runs the same instructions on every run.
    pub random_seed: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            redis: Vec::new(),
            http: BTreeMap::new(),
            properties: BTreeMap::new(),
            vm_config: Vec::new(),
            log_level: 2,
            clock: VirtualClock::default(),
            random_seed: 0x5eed_7e57_4057,
        }
    }
}

impl Setup {
    /// Adds a Redis cluster route (`outbound|6379||redis.dns` -> 127.0.0.1:port).
    pub fn redis(mut self, cluster: &str, addr: SocketAddr) -> Self {
        self.redis.push((cluster.to_string(), addr));
        self
    }

    /// Sets a host-wide property.
    pub fn property(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.insert(name.to_string(), value.into());
        self
    }
}

/// How many random bytes a host draws from before they repeat: a
/// request UUID takes 16, so 65,536 requests get distinct ones.
const RANDOM_BYTES: usize = 1 << 20;

/// A long pseudo-random byte sequence (splitmix64) for WASI's random calls.
fn random_bytes(seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(RANDOM_BYTES);
    while out.len() < RANDOM_BYTES {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// The properties a gateway always has, as a host hands them over.
fn default_properties() -> BTreeMap<String, Vec<u8>> {
    [
        ("route_name", "testhost-route"),
        ("cluster_name", "outbound|80||backend.static"),
        ("plugin_name", "testhost-plugin"),
        ("plugin_root_id", ""),
        ("source.address", "127.0.0.1:40000"),
        ("destination.address", "127.0.0.1:8080"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// `proxy_on_http_call_response(root, token, headers, body size, trailers)`.
type HttpCallResponse = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The callbacks a module exports, each optional.
#[derive(Default)]
pub(crate) struct Exports {
    pub context_create: Option<TypedFunc<(i32, i32), ()>>,
    pub vm_start: Option<TypedFunc<(i32, i32), i32>>,
    pub configure: Option<TypedFunc<(i32, i32), i32>>,
    pub request_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub response_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    pub response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    pub done: Option<TypedFunc<i32, i32>>,
    pub log: Option<TypedFunc<i32, ()>>,
    pub delete: Option<TypedFunc<i32, ()>>,
    pub tick: Option<TypedFunc<i32, ()>>,
    pub http_call_response: Option<HttpCallResponse>,
    pub redis_call_response: Option<TypedFunc<(i32, i32, i32, i32), ()>>,
}

/// A module instance under test with its root context configured.
pub struct Host {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: Instance,
    pub(crate) exports: Exports,
    pub(crate) next_id: u32,
    /// Set once the module trapped: Envoy stops using a failed VM.
    pub(crate) broken: Option<String>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("state", self.store.data())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// Fuel given to a store; far more than any run uses, so fuel only counts.
pub(crate) const FUEL: u64 = 1 << 62;
/// Most ticks one `advance` fires, so a 1 ms period over an hour stays bounded.
const MAX_TICKS_PER_ADVANCE: u64 = 10_000;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true);
        Engine::new(&config).unwrap_or_else(|_| Engine::default())
    })
}

/// Compiles once per distinct module bytes: Cranelift takes seconds on a Go
/// module, and tests load the same module into several hosts.
fn compile(wasm: &[u8]) -> Result<Module, Error> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Module>>> = OnceLock::new();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut hasher);
    let key = hasher.finish();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(m);
    }
    let module = Module::from_binary(engine(), wasm)
        .map_err(|e| Error(format!("not a loadable wasm module: {e:#}")))?;
    if let Ok(mut c) = cache.lock() {
        c.insert(key, module.clone());
    }
    Ok(module)
}

fn abi_of(module: &Module) -> Result<AbiVersion, Error> {
    let exported = |name: &str| module.exports().any(|e| e.name() == name);
    for abi in [AbiVersion::V0_2_100, AbiVersion::V0_2_1, AbiVersion::V0_2_0] {
        if exported(abi.marker()) {
            return Ok(abi);
        }
    }
    Err(Error(
        "missing or unknown proxy-wasm ABI version: the module exports none of \
         proxy_abi_version_0_2_0, proxy_abi_version_0_2_1, proxy_abi_version_0_2_100"
            .into(),
    ))
}

fn linker() -> Result<Linker<HostState>, Error> {
    let mut linker = Linker::new(engine());
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)?;
    stream_calls::add(&mut linker)?;
    host_calls::add(&mut linker)?;
    Ok(linker)
}

fn typed<P, R>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, Error>
where
    P: wasmtime::WasmParams,
    R: wasmtime::WasmResults,
{
    if instance.get_func(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map(Some)
        .map_err(|e| Error(format!("export {name} has an unexpected signature: {e:#}")))
}

impl Host {
    /// Loads a module from a file; see [`Host::load`].
    ///
    /// # Errors
    /// The file cannot be read, or what [`Host::load`] refuses.
    pub fn load_file(
        path: &std::path::Path,
        plugin_config: &[u8],
        setup: Setup,
    ) -> Result<Self, Error> {
        let wasm = std::fs::read(path)
            .map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
        Self::load(&wasm, plugin_config, setup)
    }

    /// Compiles and instantiates `wasm`, runs `_initialize` (then `main` if
    /// exported) or else `_start`, creates the root context, then
    /// `proxy_on_vm_start` and `proxy_on_configure` with `plugin_config`.
    ///
    /// # Errors
    /// No ABI marker; an import this host does not provide (named); a trap
    /// while starting; the module refusing its VM or plugin configuration
    /// (with its last log lines).
    pub fn load(wasm: &[u8], plugin_config: &[u8], setup: Setup) -> Result<Self, Error> {
        let module = compile(wasm)?;
        let abi = abi_of(&module)?;
        let linker = linker()?;
        // Each host of a process draws its own numbers (two gateways must not
        // make the same request UUIDs), the same ones on every run.
        static HOSTS: AtomicU64 = AtomicU64::new(0);
        let nth = HOSTS.fetch_add(1, Ordering::SeqCst);
        let seed = setup.random_seed ^ nth.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let wasi = WasiCtxBuilder::new()
            .wall_clock(setup.clock.clone())
            .monotonic_clock(setup.clock.clone())
            .secure_random(Deterministic::new(random_bytes(seed)))
            .insecure_random(Deterministic::new(random_bytes(!seed)))
            .insecure_random_seed(u128::from(seed))
            .build_p1();
        let mut properties = default_properties();
        properties.extend(setup.properties.clone());
        let mut redis = crate::redis::RedisClusters::default();
        for (cluster, addr) in &setup.redis {
            redis.route(cluster, *addr);
        }
        let state = HostState {
            wasi,
            abi,
            clock: setup.clock.clone(),
            root_id: 1,
            current: 0,
            effective: 0,
            streams: HashMap::new(),
            vm_config: setup.vm_config.clone(),
            plugin_config: plugin_config.to_vec(),
            properties,
            shared: HashMap::new(),
            metrics: Vec::new(),
            logs: Vec::new(),
            log_level: setup.log_level,
            tick_period_ms: 0,
            http_calls: Vec::new(),
            http_answers: setup.http.clone().into_iter().collect(),
            next_http_token: 0,
            redis,
            callback: CallbackData::default(),
            allocate: None,
            host_calls: 0,
            host_calls_by_name: BTreeMap::new(),
        };
        let mut store = Store::new(engine(), state);
        store.set_fuel(FUEL)?;
        let mut missing = Vec::new();
        for import in module.imports() {
            if linker.get_by_import(&mut store, &import).is_none() {
                missing.push(format!("{}.{}", import.module(), import.name()));
            }
        }
        if !missing.is_empty() {
            return Err(Error(format!(
                "the module imports {} which this host does not provide",
                missing.join(", ")
            )));
        }
        let instance = linker.instantiate(&mut store, &module)?;
        let allocate = match typed::<i32, i32>(&mut store, &instance, "malloc")? {
            Some(f) => Some(f),
            None => typed::<i32, i32>(&mut store, &instance, "proxy_on_memory_allocate")?,
        };
        store.data_mut().allocate = allocate;
        let exports = Exports {
            context_create: typed(&mut store, &instance, "proxy_on_context_create")?,
            vm_start: typed(&mut store, &instance, "proxy_on_vm_start")?,
            configure: typed(&mut store, &instance, "proxy_on_configure")?,
            request_headers: typed(&mut store, &instance, "proxy_on_request_headers")?,
            request_body: typed(&mut store, &instance, "proxy_on_request_body")?,
            response_headers: typed(&mut store, &instance, "proxy_on_response_headers")?,
            response_body: typed(&mut store, &instance, "proxy_on_response_body")?,
            request_trailers: typed(&mut store, &instance, "proxy_on_request_trailers")?,
            response_trailers: typed(&mut store, &instance, "proxy_on_response_trailers")?,
            done: typed(&mut store, &instance, "proxy_on_done")?,
            log: typed(&mut store, &instance, "proxy_on_log")?,
            delete: typed(&mut store, &instance, "proxy_on_delete")?,
            tick: typed(&mut store, &instance, "proxy_on_tick")?,
            http_call_response: typed(&mut store, &instance, "proxy_on_http_call_response")?,
            redis_call_response: typed(&mut store, &instance, "proxy_on_redis_call_response")?,
        };
        let mut host = Host {
            store,
            instance,
            exports,
            next_id: 2,
            broken: None,
        };
        host.start()?;
        Ok(host)
    }

    fn call_entry(&mut self, name: &str) -> Result<bool, Error> {
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(false);
        };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = ty.params().map(|_| Val::I32(0)).collect();
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        match func.call(&mut self.store, &params, &mut results) {
            Ok(()) => Ok(true),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) if exit.0 == 0 => Ok(true),
                _ => Err(Error(format!("{name} trapped: {e:#}"))),
            },
        }
    }

    fn start(&mut self) -> Result<(), Error> {
        if self.call_entry("_initialize")? {
            self.call_entry("main")?;
        } else {
            self.call_entry("_start")?;
        }
        let root = self.store.data().root_id as i32;
        self.enter(root as u32);
        if let Some(f) = self.exports.context_create.clone() {
            f.call(&mut self.store, (root, 0))?;
        }
        let vm_len = self.store.data().vm_config.len() as i32;
        if let Some(f) = self.exports.vm_start.clone() {
            if f.call(&mut self.store, (root, vm_len))? == 0 {
                return Err(self.refusal("proxy_on_vm_start"));
            }
        }
        let cfg_len = self.store.data().plugin_config.len() as i32;
        if let Some(f) = self.exports.configure.clone() {
            if f.call(&mut self.store, (root, cfg_len))? == 0 {
                return Err(self.refusal("proxy_on_configure"));
            }
        }
        self.leave();
        self.drain()?;
        Ok(())
    }

    fn refusal(&self, callback: &str) -> Error {
        let logs = &self.store.data().logs;
        let last: Vec<&str> = logs
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|l| l.message.as_str())
            .collect();
        Error(format!(
            "the module refused its configuration ({callback} returned false); last log lines: {}",
            if last.is_empty() {
                "(none)".to_string()
            } else {
                last.join(" | ")
            }
        ))
    }

    /// Marks context `id` as the one whose callback runs.
    pub(crate) fn enter(&mut self, id: u32) {
        if fuel_trace::on() {
            fuel_trace::line(self.fuel_used(), format_args!("enter {id}"));
        }
        let s = self.store.data_mut();
        s.current = id;
        s.effective = id;
    }

    pub(crate) fn leave(&mut self) {
        if fuel_trace::on() {
            let id = self.store.data().current;
            fuel_trace::line(self.fuel_used(), format_args!("leave {id}"));
        }
        let s = self.store.data_mut();
        s.current = 0;
        s.effective = 0;
    }

    /// Whether an `http_call` or Redis call still waits for its answer.
    pub(crate) fn has_pending(&self) -> bool {
        let s = self.store.data();
        s.redis.has_pending() || s.http_calls.iter().any(|c| !c.delivered)
    }

    /// Delivers one pending answer on the root context, HTTP calls first,
    /// each kind in the order sent; false when none.
    ///
    /// # Errors
    /// A trap in the callback.
    pub(crate) fn deliver_one(&mut self) -> Result<bool, Error> {
        let next_http = self
            .store
            .data()
            .http_calls
            .iter()
            .position(|c| !c.delivered);
        if let Some(at) = next_http {
            self.deliver_http(at)?;
            return Ok(true);
        }
        let Some(delivery) = self.store.data_mut().redis.next_delivery() else {
            return Ok(false);
        };
        self.deliver_redis(delivery)?;
        Ok(true)
    }

    /// `proxy_on_http_call_response` for the call at `at` of the record.
    pub(crate) fn deliver_http(&mut self, at: usize) -> Result<(), Error> {
        let root = self.store.data().root_id;
        let call = {
            let calls = &mut self.store.data_mut().http_calls;
            let Some(call) = calls.get_mut(at) else {
                return Ok(());
            };
            call.delivered = true;
            call.clone()
        };
        let (headers, body, trailers) = match &call.answer {
            Some(a) => (a.headers.len(), a.body.len(), a.trailers.len()),
            None => (0, 0, 0),
        };
        self.store.data_mut().callback.http = call.answer.clone();
        self.enter(root);
        let result = match self.exports.http_call_response.clone() {
            Some(f) => f.call(
                &mut self.store,
                (
                    root as i32,
                    call.token as i32,
                    headers as i32,
                    body as i32,
                    trailers as i32,
                ),
            ),
            None => Ok(()),
        };
        self.leave();
        self.store.data_mut().callback.http = None;
        result?;
        Ok(())
    }

    /// `proxy_on_redis_call_response` for one reply or failure.
    pub(crate) fn deliver_redis(&mut self, delivery: Delivery) -> Result<(), Error> {
        let root = self.store.data().root_id;
        let (token, status, bytes) = match delivery {
            Delivery::Reply { token, bytes } => (token, 0, Some(bytes)),
            Delivery::Failed { token } => (token, 1, None),
        };
        let size = bytes.as_ref().map_or(0, Vec::len);
        self.store.data_mut().callback.redis = bytes;
        self.enter(root);
        let result = match self.exports.redis_call_response.clone() {
            Some(f) => f.call(
                &mut self.store,
                (root as i32, token as i32, status, size as i32),
            ),
            None => Ok(()),
        };
        self.leave();
        self.store.data_mut().callback.redis = None;
        result?;
        Ok(())
    }

    /// Delivers every pending answer (and those the callbacks cause).
    ///
    /// # Errors
    /// A trap in a callback.
    pub(crate) fn drain(&mut self) -> Result<(), Error> {
        while self.deliver_one()? {}
        Ok(())
    }

    /// Runs `proxy_on_tick` once on the root context, then delivers what it
    /// caused.
    ///
    /// # Errors
    /// A trap.
    pub fn tick(&mut self) -> Result<(), Error> {
        let root = self.store.data().root_id as i32;
        if let Some(f) = self.exports.tick.clone() {
            self.enter(root as u32);
            let r = f.call(&mut self.store, root);
            self.leave();
            r?;
        }
        self.drain()
    }

    /// Moves the virtual clock forward, firing one tick per elapsed tick
    /// period (at most 10,000).
    ///
    /// # Errors
    /// A trap in a tick.
    pub fn advance(&mut self, by: Duration) -> Result<(), Error> {
        let period = u64::from(self.store.data().tick_period_ms);
        let clock = self.store.data().clock.clone();
        if period == 0 {
            clock.advance(by);
            return Ok(());
        }
        let total_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let ticks = (total_ms / period).min(MAX_TICKS_PER_ADVANCE);
        for _ in 0..ticks {
            clock.advance(Duration::from_millis(period));
            self.tick()?;
        }
        clock.advance(Duration::from_millis(
            total_ms.saturating_sub(ticks * period),
        ));
        Ok(())
    }

    /// The virtual clock (share it through [`Setup::clock`]).
    pub fn clock(&self) -> &VirtualClock {
        &self.store.data().clock
    }

    /// The ABI version the module declared.
    pub fn abi(&self) -> AbiVersion {
        self.store.data().abi
    }

    /// Every metric the module defined, with its value.
    pub fn metrics(&self) -> &[Metric] {
        &self.store.data().metrics
    }

    /// A metric's value by name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Log lines at or above the log level since loading or the last
    /// request (a request's own lines are in its [`crate::Exchange`]).
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// Redis calls made since the last request (outside any request: from
    /// ticks or configuration).
    pub fn redis_calls(&self) -> &[RedisCall] {
        self.store.data().redis.calls()
    }

    /// TCP connections to Redis opened so far.
    pub fn redis_connects(&self) -> u64 {
        self.store.data().redis.connects()
    }

    /// Host calls made so far, in total and by import name.
    pub fn host_calls(&self) -> (u64, &BTreeMap<&'static str, u64>) {
        let s = self.store.data();
        (s.host_calls, &s.host_calls_by_name)
    }

    /// The guest's linear memory size in bytes.
    pub fn memory_bytes(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map_or(0, |m| m.data_size(&self.store))
    }

    /// Wasm fuel (about one unit per instruction) used since loading.
    pub fn fuel_used(&self) -> u64 {
        FUEL.saturating_sub(self.store.get_fuel().unwrap_or(FUEL))
    }

    /// The tick period the module asked for, in milliseconds (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// A shared-data value by key.
    pub fn shared_data(&self, key: &[u8]) -> Option<&[u8]> {
        self.store.data().shared.get(key).map(|(v, _)| v.as_slice())
    }

    /// Adds scripted answers for `http_call`s to `cluster`.
    pub fn answer_http(&mut self, cluster: &str, answers: Vec<HttpAnswer>) {
        self.store
            .data_mut()
            .http_answers
            .entry(cluster.to_string())
            .or_default()
            .extend(answers);
    }
}
