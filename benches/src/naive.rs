//! Redis commands encoded the obvious way: owned `String`s and `format!`
//! per command, a fresh buffer per command.
//!
//! These are the alternatives of the `resp_encode` group. Each produces the
//! same bytes as the kit's encoder (the crate's tests check it); only the
//! style differs.

use crate::inputs::{KeyFields, TTL};
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};

/// The counter key, built with `format!`.
pub fn key(k: &KeyFields<'_>) -> String {
    format!(
        "{}:{{{}:{}:{}:{}}}:{}",
        k.prefix, k.rule, k.kind, k.name, k.value, k.start
    )
}

/// `EVALSHA <sha> 1 <key> <ttl>` as owned strings, one allocation per
/// argument: what a plugin that keeps its command as `Vec<String>` builds.
pub fn evalsha_args(sha: &str, k: &KeyFields<'_>) -> Vec<String> {
    vec![
        "EVALSHA".to_string(),
        sha.to_string(),
        "1".to_string(),
        key(k),
        TTL.to_string(),
    ]
}

/// `INCRBY <key> <delta>` as owned strings.
pub fn incrby_args(k: &KeyFields<'_>, delta: i64) -> Vec<String> {
    vec!["INCRBY".to_string(), key(k), delta.to_string()]
}

/// RESP2 array of bulk strings, written with `format!` into a fresh `Vec`.
pub fn resp_command(args: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{}\r\n", arg.len(), arg).as_bytes());
    }
    out
}

/// RESP2 through `redis-protocol`'s owned frames: each argument moved into
/// its own `OwnedFrame::BulkString`, the array into a `Vec`, and the frame
/// encoded into a fresh buffer of exactly its length.
pub fn owned_frame_command(args: Vec<String>) -> Vec<u8> {
    let frame = OwnedFrame::Array(
        args.into_iter()
            .map(|a| OwnedFrame::BulkString(a.into_bytes()))
            .collect(),
    );
    let mut out = vec![0u8; frame.encode_len(false)];
    // The buffer has exactly the frame's length: encoding cannot fail.
    let _ = encode(&mut out, &frame, false);
    out
}

/// A webdis path `/CMD/arg1/arg2.raw`, percent-encoding with
/// `format!("%{:02X}")` into a growing `String`. Escapes exactly what the
/// kit escapes: everything but ASCII letters, digits, `-` and `_`.
pub fn webdis_path(args: &[String]) -> String {
    let mut path = String::new();
    for arg in args {
        path.push('/');
        for b in arg.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                path.push(char::from(b));
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    path.push_str(".raw");
    path
}
