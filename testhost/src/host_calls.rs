//! Host calls that are not about one stream's data: logs, time, properties,
//! metrics, shared data and queues, foreign functions, `http_call`, Higress's
//! Redis calls, ticks and the effective context.

use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use crate::abi::{decode_pairs, metric, status};
use crate::guest::{self, finish, Fault, Outcome};
use crate::state::{HostState, HttpCall, LogLine, Metric};
use crate::stream_calls::import;

type Cx<'a, 'b> = &'a mut Caller<'b, HostState>;

/// Adds these host calls to `linker`.
///
/// # Errors
/// When wasmtime refuses a definition (a duplicate).
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    import!(linker, "proxy_log", log, (level: i32, p: i32, l: i32));
    import!(linker, "proxy_get_log_level", log_level, (rp: i32));
    import!(linker, "proxy_get_current_time_nanoseconds", now, (rp: i32));
    import!(linker, "proxy_set_tick_period_milliseconds", tick_period, (ms: i32));
    import!(linker, "proxy_set_effective_context", effective_context, (id: i32));
    import!(linker, "proxy_done", done, ());
    import!(linker, "proxy_get_property", get_property, (pp: i32, pl: i32, rp: i32, rs: i32));
    import!(linker, "proxy_set_property", set_property, (pp: i32, pl: i32, vp: i32, vl: i32));
    import!(linker, "proxy_define_metric", define_metric, (kind: i32, np: i32, nl: i32, rid: i32));
    import!(linker, "proxy_increment_metric", increment_metric, (id: i32, by: i64));
    import!(linker, "proxy_record_metric", record_metric, (id: i32, value: i64));
    import!(linker, "proxy_get_metric", get_metric, (id: i32, rp: i32));
    import!(linker, "proxy_get_shared_data", get_shared, (kp: i32, kl: i32, rp: i32, rs: i32, rc: i32));
    import!(linker, "proxy_set_shared_data", set_shared, (kp: i32, kl: i32, vp: i32, vl: i32, cas: i32));
    import!(linker, "proxy_register_shared_queue", register_queue, (np: i32, nl: i32, rid: i32));
    import!(linker, "proxy_resolve_shared_queue", resolve_queue, (vp: i32, vl: i32, np: i32, nl: i32, rid: i32));
    import!(linker, "proxy_enqueue_shared_queue", enqueue, (id: i32, p: i32, l: i32));
    import!(linker, "proxy_dequeue_shared_queue", dequeue, (id: i32, rp: i32, rs: i32));
    import!(linker, "proxy_call_foreign_function", foreign, (np: i32, nl: i32, ap: i32, al: i32, rp: i32, rs: i32));
    import!(linker, "proxy_http_call", http_call,
        (up: i32, ul: i32, hp: i32, hl: i32, bp: i32, bl: i32, tp: i32, tl: i32, timeout: i32, rt: i32));
    import!(linker, "proxy_redis_init", redis_init,
        (sp: i32, sl: i32, up: i32, ul: i32, pp: i32, pl: i32, timeout: i32));
    import!(linker, "proxy_redis_call", redis_call, (sp: i32, sl: i32, qp: i32, ql: i32, rt: i32));
    import!(linker, "proxy_get_status", get_status, (rc: i32, rp: i32, rs: i32));
    for (name, params) in GRPC_CALLS {
        unimplemented(linker, name, params)?;
    }
    Ok(())
}

/// The gRPC host calls and how many `i32` parameters each takes. No module
/// under test makes a gRPC call; a module that imports them still loads.
const GRPC_CALLS: [(&str, usize); 5] = [
    ("proxy_grpc_call", 12),
    ("proxy_grpc_stream", 9),
    ("proxy_grpc_send", 4),
    ("proxy_grpc_cancel", 1),
    ("proxy_grpc_close", 1),
];

/// Defines host call `name` of `params` `i32` parameters that answers
/// Unimplemented, as a host without that feature does, and is counted
/// like every other call.
fn unimplemented(
    linker: &mut Linker<HostState>,
    name: &'static str,
    params: usize,
) -> wasmtime::Result<()> {
    let ty = FuncType::new(
        linker.engine(),
        std::iter::repeat_n(ValType::I32, params),
        [ValType::I32],
    );
    linker.func_new("env", name, ty, move |mut c, _params, results| {
        c.data_mut().count(name);
        if let Some(result) = results.first_mut() {
            *result = Val::I32(status::UNIMPLEMENTED);
        }
        Ok(())
    })?;
    Ok(())
}

fn log(c: Cx, level: i32, p: i32, l: i32) -> Outcome {
    let message = guest::read_string(c, p, l)?;
    if std::env::var_os("TESTHOST_ECHO_LOGS").is_some() {
        eprintln!("[testhost {level}] {message}");
    }
    // Like Envoy, keep only what the log level lets through: Go plugins
    // log debug lines whatever the level.
    let state = c.data_mut();
    if level as u32 >= state.log_level {
        state.logs.push(LogLine {
            level: level as u32,
            message,
        });
    }
    Ok(())
}

fn log_level(c: Cx, rp: i32) -> Outcome {
    let level = c.data().log_level;
    guest::write_u32(c, rp, level)
}

fn now(c: Cx, rp: i32) -> Outcome {
    let nanos = c.data().clock.now_nanos();
    guest::write_u64(c, rp, nanos)
}

fn tick_period(c: Cx, ms: i32) -> Outcome {
    c.data_mut().tick_period_ms = ms as u32;
    Ok(())
}

fn effective_context(c: Cx, id: i32) -> Outcome {
    let id = id as u32;
    let state = c.data_mut();
    if id != state.root_id && !state.streams.contains_key(&id) {
        return Err(Fault::Status(status::BAD_ARGUMENT));
    }
    state.effective = id;
    Ok(())
}

fn done(_: Cx) -> Outcome {
    Ok(())
}

/// A property path arrives as NUL-separated segments; it is kept as a
/// dotted name (`source\0address` -> `source.address`).
fn property_name(bytes: &[u8]) -> String {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    trimmed
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

fn header_of(state: &mut HostState, name: &[u8]) -> Option<Vec<u8>> {
    let s = state.stream()?;
    s.request_headers
        .iter()
        .find(|(k, _)| k.as_slice() == name)
        .map(|(_, v)| v.clone())
}

/// Properties derived from the request the way Envoy exposes them.
fn derived_property(c: Cx, name: &str) -> Option<Vec<u8>> {
    let state = c.data_mut();
    match name {
        "request.path" | "request.url_path" => {
            let path = header_of(state, b":path")?;
            if name == "request.url_path" {
                let end = path.iter().position(|b| *b == b'?').unwrap_or(path.len());
                Some(path.get(..end).unwrap_or_default().to_vec())
            } else {
                Some(path)
            }
        }
        "request.method" => header_of(state, b":method"),
        "request.host" => header_of(state, b":authority"),
        "request.scheme" => header_of(state, b":scheme"),
        "request.id" | "x_request_id" => header_of(state, b"x-request-id"),
        _ => None,
    }
}

fn get_property(c: Cx, pp: i32, pl: i32, rp: i32, rs: i32) -> Outcome {
    let name = property_name(&guest::read(c, pp, pl)?);
    let value = if name == "plugin_vm_memory" {
        let mem = c
            .get_export("memory")
            .and_then(|e| e.into_memory())
            .map(|m| m.data_size(&*c) as u64)
            .unwrap_or(0);
        Some(mem.to_le_bytes().to_vec())
    } else {
        let effective = c.data().effective;
        let from_stream = c
            .data()
            .streams
            .get(&effective)
            .and_then(|s| s.properties.get(&name).cloned());
        match from_stream {
            Some(v) => Some(v),
            None => match c.data().properties.get(&name).cloned() {
                Some(v) => Some(v),
                None => derived_property(c, &name),
            },
        }
    };
    let value = value.ok_or(Fault::Status(status::NOT_FOUND))?;
    guest::hand_over(c, &value, rp, rs)
}

fn set_property(c: Cx, pp: i32, pl: i32, vp: i32, vl: i32) -> Outcome {
    let name = property_name(&guest::read(c, pp, pl)?);
    let value = guest::read(c, vp, vl)?;
    let state = c.data_mut();
    match state.stream() {
        Some(s) => {
            s.properties.insert(name, value);
        }
        None => {
            state.properties.insert(name, value);
        }
    }
    Ok(())
}

fn define_metric(c: Cx, kind: i32, np: i32, nl: i32, rid: i32) -> Outcome {
    if !matches!(kind, metric::COUNTER | metric::GAUGE | metric::HISTOGRAM) {
        return Err(Fault::Status(status::BAD_ARGUMENT));
    }
    let name = guest::read_string(c, np, nl)?;
    let metrics = &mut c.data_mut().metrics;
    let id = match metrics.iter().position(|m| m.name == name) {
        Some(id) => id,
        None => {
            metrics.push(Metric {
                name,
                kind,
                value: 0,
            });
            metrics.len() - 1
        }
    };
    guest::write_u32(c, rid, id as u32)
}

fn metric_mut<'a>(c: &'a mut Caller<'_, HostState>, id: i32) -> Outcome<&'a mut Metric> {
    c.data_mut()
        .metrics
        .get_mut(id as u32 as usize)
        .ok_or(Fault::Status(status::NOT_FOUND))
}

fn increment_metric(c: Cx, id: i32, by: i64) -> Outcome {
    let m = metric_mut(c, id)?;
    if m.kind == metric::HISTOGRAM {
        return Err(Fault::Status(status::BAD_ARGUMENT));
    }
    m.value = m.value.saturating_add(by);
    Ok(())
}

fn record_metric(c: Cx, id: i32, value: i64) -> Outcome {
    let m = metric_mut(c, id)?;
    m.value = value;
    Ok(())
}

fn get_metric(c: Cx, id: i32, rp: i32) -> Outcome {
    let value = metric_mut(c, id)?.value;
    guest::write_u64(c, rp, value as u64)
}

fn get_shared(c: Cx, kp: i32, kl: i32, rp: i32, rs: i32, rc: i32) -> Outcome {
    let key = guest::read(c, kp, kl)?;
    let (value, cas) = c
        .data()
        .shared
        .get(&key)
        .cloned()
        .ok_or(Fault::Status(status::NOT_FOUND))?;
    guest::hand_over(c, &value, rp, rs)?;
    guest::write_u32(c, rc, cas)
}

/// Envoy's rule: a non-zero CAS must match the stored one; a key not yet
/// stored takes any CAS.
fn set_shared(c: Cx, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) -> Outcome {
    let key = guest::read(c, kp, kl)?;
    let value = guest::read(c, vp, vl)?;
    let shared = &mut c.data_mut().shared;
    match shared.get_mut(&key) {
        Some((stored, stored_cas)) => {
            if cas != 0 && cas as u32 != *stored_cas {
                return Err(Fault::Status(status::CAS_MISMATCH));
            }
            *stored = value;
            *stored_cas = stored_cas.wrapping_add(1).max(1);
        }
        None => {
            shared.insert(key, (value, 1));
        }
    }
    Ok(())
}

fn queue_id(state: &mut HostState, name: &str, create: bool) -> Option<u32> {
    let key = format!("queue:{name}").into_bytes();
    match state.shared.get(&key) {
        Some((id, _)) => id.first().map(|b| u32::from(*b)),
        None if create => {
            let id = state
                .shared
                .keys()
                .filter(|k| k.starts_with(b"queue:"))
                .count() as u32
                + 1;
            state.shared.insert(key, (vec![id as u8], 1));
            Some(id)
        }
        None => None,
    }
}

fn register_queue(c: Cx, np: i32, nl: i32, rid: i32) -> Outcome {
    let name = guest::read_string(c, np, nl)?;
    let id = queue_id(c.data_mut(), &name, true).ok_or(Fault::Status(status::INTERNAL_FAILURE))?;
    guest::write_u32(c, rid, id)
}

fn resolve_queue(c: Cx, _vp: i32, _vl: i32, np: i32, nl: i32, rid: i32) -> Outcome {
    let name = guest::read_string(c, np, nl)?;
    let id = queue_id(c.data_mut(), &name, false).ok_or(Fault::Status(status::NOT_FOUND))?;
    guest::write_u32(c, rid, id)
}

fn queue_key(id: i32) -> Vec<u8> {
    format!("queue-items:{id}").into_bytes()
}

fn enqueue(c: Cx, id: i32, p: i32, l: i32) -> Outcome {
    let item = guest::read(c, p, l)?;
    let entry = c.data_mut().shared.entry(queue_key(id)).or_default();
    entry
        .0
        .extend_from_slice(&(item.len() as u32).to_le_bytes());
    entry.0.extend_from_slice(&item);
    Ok(())
}

fn dequeue(c: Cx, id: i32, rp: i32, rs: i32) -> Outcome {
    let item = {
        let entry = c
            .data_mut()
            .shared
            .get_mut(&queue_key(id))
            .ok_or(Fault::Status(status::EMPTY))?;
        let len = entry
            .0
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or(Fault::Status(status::EMPTY))?;
        let item = entry.0.get(4..4 + len).unwrap_or_default().to_vec();
        entry.0.drain(..(4 + len).min(entry.0.len()));
        item
    };
    guest::hand_over(c, &item, rp, rs)
}

/// Only `get_log_level` (Higress's Go SDK asks for it) is known; it answers
/// the level as a u32 little-endian.
fn foreign(c: Cx, np: i32, nl: i32, _ap: i32, _al: i32, rp: i32, rs: i32) -> Outcome {
    let name = guest::read_string(c, np, nl)?;
    match name.as_str() {
        "get_log_level" => {
            let level = c.data().log_level.to_le_bytes();
            guest::hand_over(c, &level, rp, rs)
        }
        _ => Err(Fault::Status(status::NOT_FOUND)),
    }
}

#[allow(clippy::too_many_arguments)]
fn http_call(
    c: Cx,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    _tp: i32,
    _tl: i32,
    timeout: i32,
    rt: i32,
) -> Outcome {
    let upstream = guest::read_string(c, up, ul)?;
    let headers =
        decode_pairs(&guest::read(c, hp, hl)?).ok_or(Fault::Status(status::BAD_ARGUMENT))?;
    let body = guest::read(c, bp, bl)?;
    // Envoy refuses a call without these pseudo-headers, and one to a
    // cluster it does not know.
    for required in [&b":method"[..], b":path", b":authority"] {
        if !headers
            .iter()
            .any(|(k, v)| k.as_slice() == required && !v.is_empty())
        {
            return Err(Fault::Status(status::BAD_ARGUMENT));
        }
    }
    let state = c.data_mut();
    let answers = state
        .http_answers
        .get_mut(&upstream)
        .ok_or(Fault::Status(status::BAD_ARGUMENT))?;
    let answer = if answers.is_empty() {
        None
    } else {
        Some(answers.remove(0))
    };
    state.next_http_token = state.next_http_token.wrapping_add(1).max(1);
    let token = state.next_http_token;
    state.http_calls.push(HttpCall {
        token,
        upstream,
        headers,
        body,
        timeout_ms: timeout as u32,
        answer,
        delivered: false,
    });
    guest::write_u32(c, rt, token)
}

#[allow(clippy::too_many_arguments)]
fn redis_init(
    c: Cx,
    sp: i32,
    sl: i32,
    up: i32,
    ul: i32,
    pp: i32,
    pl: i32,
    timeout: i32,
) -> Outcome {
    let service = guest::read_string(c, sp, sl)?;
    let username = guest::read(c, up, ul)?;
    let password = guest::read(c, pp, pl)?;
    c.data_mut()
        .redis
        .init(&service, &username, &password, timeout as u32)
        .map_err(Fault::Status)
}

fn redis_call(c: Cx, sp: i32, sl: i32, qp: i32, ql: i32, rt: i32) -> Outcome {
    let service = guest::read_string(c, sp, sl)?;
    let query = guest::read(c, qp, ql)?;
    let token = c
        .data_mut()
        .redis
        .call(&service, &query)
        .map_err(Fault::Status)?;
    guest::write_u32(c, rt, token)
}

fn get_status(c: Cx, rc: i32, rp: i32, rs: i32) -> Outcome {
    guest::write_u32(c, rc, 0)?;
    guest::hand_over(c, b"", rp, rs)
}

#[cfg(test)]
mod tests {
    use super::property_name;

    #[test]
    fn property_paths_become_dotted_names() {
        assert_eq!(property_name(b"source\0address"), "source.address");
        assert_eq!(property_name(b"route_name"), "route_name");
        assert_eq!(property_name(b"a\0b\0"), "a.b");
    }
}
