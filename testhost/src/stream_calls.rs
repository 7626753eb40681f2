//! Host calls on a stream: header maps, body buffers, local responses,
//! `continue_stream` and `close_stream`.

use wasmtime::{Caller, Linker};

use crate::abi::{buffer, decode_pairs, encode_pairs, map, status, stream};
use crate::guest::{self, finish, Fault, Outcome};
use crate::state::{HostState, LocalResponse, Pairs};

/// Registers `$name` in module `env`: counts the call, runs `$f`, maps its
/// outcome to the ABI result.
macro_rules! import {
    ($linker:ident, $name:literal, $f:expr, ($($arg:ident : $t:ty),*)) => {
        $linker.func_wrap(
            "env",
            $name,
            |mut c: Caller<'_, HostState>, $($arg: $t),*| -> wasmtime::Result<i32> {
                c.data_mut().count($name);
                if $crate::fuel_trace::on() {
                    let used = $crate::host::FUEL.saturating_sub(c.get_fuel().unwrap_or(0));
                    $crate::fuel_trace::line(used, format_args!("call {}", $name));
                }
                finish($f(&mut c, $($arg),*))
            },
        )?;
    };
}
pub(crate) use import;

type Cx<'a, 'b> = &'a mut Caller<'b, HostState>;

/// Adds the stream host calls to `linker`.
///
/// # Errors
/// When wasmtime refuses a definition (a duplicate).
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    import!(linker, "proxy_get_header_map_value", get_value, (t: i32, kp: i32, kl: i32, rp: i32, rs: i32));
    import!(linker, "proxy_get_header_map_pairs", get_pairs, (t: i32, rp: i32, rs: i32));
    import!(linker, "proxy_set_header_map_pairs", set_pairs, (t: i32, p: i32, l: i32));
    import!(linker, "proxy_add_header_map_value", add_value, (t: i32, kp: i32, kl: i32, vp: i32, vl: i32));
    import!(linker, "proxy_replace_header_map_value", replace_value, (t: i32, kp: i32, kl: i32, vp: i32, vl: i32));
    import!(linker, "proxy_remove_header_map_value", remove_value, (t: i32, kp: i32, kl: i32));
    import!(linker, "proxy_get_header_map_size", map_size, (t: i32, rs: i32));
    import!(linker, "proxy_get_buffer_bytes", get_buffer, (t: i32, start: i32, max: i32, rp: i32, rs: i32));
    import!(linker, "proxy_get_buffer_status", buffer_status, (t: i32, rl: i32, rf: i32));
    import!(linker, "proxy_set_buffer_bytes", set_buffer, (t: i32, start: i32, len: i32, dp: i32, dl: i32));
    import!(linker, "proxy_send_local_response", local_response,
        (code: i32, dp: i32, dl: i32, bp: i32, bl: i32, hp: i32, hl: i32, grpc: i32));
    import!(linker, "proxy_continue_stream", continue_stream, (t: i32));
    import!(linker, "proxy_close_stream", close_stream, (t: i32));
    import!(linker, "proxy_continue_request", continue_request, ());
    import!(linker, "proxy_continue_response", continue_response, ());
    import!(linker, "proxy_clear_route_cache", clear_route_cache, ());
    Ok(())
}

fn lower(key: Vec<u8>) -> Vec<u8> {
    key.to_ascii_lowercase()
}

/// The header map `map_type` names, as the effective context sees it now.
fn pairs_mut(state: &mut HostState, map_type: i32) -> Option<&mut Pairs> {
    match map_type {
        map::HTTP_CALL_RESPONSE_HEADERS => state.callback.http.as_mut().map(|a| &mut a.headers),
        map::HTTP_CALL_RESPONSE_TRAILERS => state.callback.http.as_mut().map(|a| &mut a.trailers),
        _ => {
            let s = state.stream()?;
            match map_type {
                map::REQUEST_HEADERS => Some(&mut s.request_headers),
                map::REQUEST_TRAILERS => Some(&mut s.request_trailers),
                map::RESPONSE_HEADERS => Some(&mut s.response_headers),
                map::RESPONSE_TRAILERS => Some(&mut s.response_trailers),
                _ => None,
            }
        }
    }
}

fn with_map<T>(c: Cx, map_type: i32, f: impl FnOnce(&mut Pairs) -> T) -> Outcome<T> {
    pairs_mut(c.data_mut(), map_type)
        .map(f)
        .ok_or(Fault::Status(status::NOT_FOUND))
}

fn get_value(c: Cx, t: i32, kp: i32, kl: i32, rp: i32, rs: i32) -> Outcome {
    let key = lower(guest::read(c, kp, kl)?);
    let value = with_map(c, t, |m| {
        m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    })?
    .ok_or(Fault::Status(status::NOT_FOUND))?;
    guest::hand_over(c, &value, rp, rs)
}

fn get_pairs(c: Cx, t: i32, rp: i32, rs: i32) -> Outcome {
    let bytes = with_map(c, t, |m| encode_pairs(m))?;
    guest::hand_over(c, &bytes, rp, rs)
}

fn set_pairs(c: Cx, t: i32, p: i32, l: i32) -> Outcome {
    let bytes = guest::read(c, p, l)?;
    let pairs = decode_pairs(&bytes).ok_or(Fault::Status(status::BAD_ARGUMENT))?;
    let pairs: Pairs = pairs.into_iter().map(|(k, v)| (lower(k), v)).collect();
    with_map(c, t, |m| *m = pairs)
}

fn add_value(c: Cx, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> Outcome {
    let key = lower(guest::read(c, kp, kl)?);
    let value = guest::read(c, vp, vl)?;
    with_map(c, t, |m| m.push((key, value)))
}

fn replace_value(c: Cx, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> Outcome {
    let key = lower(guest::read(c, kp, kl)?);
    let value = guest::read(c, vp, vl)?;
    with_map(c, t, |m| match m.iter().position(|(k, _)| *k == key) {
        Some(at) => {
            if let Some(slot) = m.get_mut(at) {
                slot.1 = value;
            }
            let mut seen = 0;
            m.retain(|(k, _)| {
                if *k == key {
                    seen += 1;
                    seen == 1
                } else {
                    true
                }
            });
        }
        None => m.push((key, value)),
    })
}

fn remove_value(c: Cx, t: i32, kp: i32, kl: i32) -> Outcome {
    let key = lower(guest::read(c, kp, kl)?);
    with_map(c, t, |m| m.retain(|(k, _)| *k != key))
}

fn map_size(c: Cx, t: i32, rs: i32) -> Outcome {
    let size = with_map(c, t, |m| {
        m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    })?;
    guest::write_u32(c, rs, size as u32)
}

/// The bytes of buffer `t` as the current callback may see them.
fn buffer_bytes(state: &mut HostState, t: i32) -> Option<&mut Vec<u8>> {
    match t {
        buffer::VM_CONFIGURATION => Some(&mut state.vm_config),
        buffer::PLUGIN_CONFIGURATION => Some(&mut state.plugin_config),
        buffer::HTTP_CALL_RESPONSE_BODY => state.callback.http.as_mut().map(|a| &mut a.body),
        buffer::REDIS_CALL_RESPONSE => state.callback.redis.as_mut(),
        buffer::REQUEST_BODY => state.stream().map(|s| &mut s.request_body),
        buffer::RESPONSE_BODY => state.stream().map(|s| &mut s.response_body),
        _ => None,
    }
}

fn get_buffer(c: Cx, t: i32, start: i32, max: i32, rp: i32, rs: i32) -> Outcome {
    let bytes = {
        let buf = buffer_bytes(c.data_mut(), t).ok_or(Fault::Status(status::NOT_FOUND))?;
        let start = start as u32 as usize;
        if start > buf.len() {
            return Err(Fault::Status(status::BAD_ARGUMENT));
        }
        let end = start.saturating_add(max as u32 as usize).min(buf.len());
        buf.get(start..end).unwrap_or_default().to_vec()
    };
    guest::hand_over(c, &bytes, rp, rs)
}

fn buffer_status(c: Cx, t: i32, rl: i32, rf: i32) -> Outcome {
    let len = buffer_bytes(c.data_mut(), t)
        .map(|b| b.len())
        .ok_or(Fault::Status(status::NOT_FOUND))?;
    guest::write_u32(c, rl, len as u32)?;
    guest::write_u32(c, rf, 0)
}

/// Envoy's rules: at 0 with length 0 prepend, at 0 covering the whole
/// buffer replace it, at or past the end append; anything else is refused.
fn set_buffer(c: Cx, t: i32, start: i32, len: i32, dp: i32, dl: i32) -> Outcome {
    let data = guest::read(c, dp, dl)?;
    let buf = buffer_bytes(c.data_mut(), t).ok_or(Fault::Status(status::NOT_FOUND))?;
    let (start, len) = (start as u32 as usize, len as u32 as usize);
    if start == 0 {
        if len == 0 {
            buf.splice(0..0, data);
        } else if len >= buf.len() {
            *buf = data;
        } else {
            return Err(Fault::Status(status::BAD_ARGUMENT));
        }
    } else if start >= buf.len() {
        buf.extend_from_slice(&data);
    } else {
        return Err(Fault::Status(status::BAD_ARGUMENT));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn local_response(
    c: Cx,
    code: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    _grpc: i32,
) -> Outcome {
    let details = guest::read_string(c, dp, dl)?;
    let body = guest::read(c, bp, bl)?;
    let headers = decode_pairs(&guest::read(c, hp, hl)?)
        .ok_or(Fault::Status(status::BAD_ARGUMENT))?
        .into_iter()
        .map(|(k, v)| (lower(k), v))
        .collect();
    let s = c
        .data_mut()
        .stream()
        .ok_or(Fault::Status(status::BAD_ARGUMENT))?;
    if s.local_response.is_none() && !s.local_sent {
        s.local_response = Some(LocalResponse {
            status: code as u32,
            details,
            headers,
            body,
        });
    }
    Ok(())
}

fn continue_stream(c: Cx, t: i32) -> Outcome {
    let s = c
        .data_mut()
        .stream()
        .ok_or(Fault::Status(status::NOT_FOUND))?;
    match t {
        stream::REQUEST => s.resume_request = true,
        stream::RESPONSE => s.resume_response = true,
        _ => return Err(Fault::Status(status::BAD_ARGUMENT)),
    }
    Ok(())
}

fn close_stream(c: Cx, t: i32) -> Outcome {
    let s = c
        .data_mut()
        .stream()
        .ok_or(Fault::Status(status::NOT_FOUND))?;
    if !matches!(t, stream::REQUEST | stream::RESPONSE) {
        return Err(Fault::Status(status::BAD_ARGUMENT));
    }
    s.closed = true;
    Ok(())
}

fn continue_request(c: Cx) -> Outcome {
    continue_stream(c, stream::REQUEST)
}

fn continue_response(c: Cx) -> Outcome {
    continue_stream(c, stream::RESPONSE)
}

fn clear_route_cache(_: Cx) -> Outcome {
    Ok(())
}
