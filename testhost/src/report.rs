//! One JSON line per replayed request: what the client got, what the
//! plugin added, what reached the upstream, the Redis and HTTP calls, the
//! logs, and what it cost (fuel, host calls, linear memory).

use serde_json::{json, Map, Value};

use crate::exchange::{Exchange, Request, Verdict};
use crate::state::Pairs;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn object(pairs: &Pairs) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.entry(text(k)).or_insert_with(|| Value::String(text(v)));
    }
    Value::Object(m)
}

/// Pairs in `after` that `before` did not have (added or changed).
fn added(before: &Pairs, after: &Pairs) -> Value {
    let fresh: Pairs = after
        .iter()
        .filter(|p| !before.contains(p))
        .cloned()
        .collect();
    object(&fresh)
}

fn verdict(v: &Verdict) -> Value {
    match v {
        Verdict::Forwarded => json!({"kind": "forwarded"}),
        Verdict::LocalResponse { details } => json!({"kind": "local_response", "details": details}),
        Verdict::Hang { waiting } => json!({"kind": "hang", "waiting": waiting}),
        Verdict::Reset => json!({"kind": "reset"}),
        Verdict::Trap(why) => json!({"kind": "trap", "message": why}),
    }
}

/// The report line of request number `n`.
pub fn line(n: usize, request: &Request, ex: &Exchange) -> Value {
    let mut upstream_answer: Pairs = vec![(
        b":status".to_vec(),
        request.upstream.status.to_string().into_bytes(),
    )];
    upstream_answer.extend(request.upstream.headers.iter().cloned());
    json!({
        "n": n,
        "verdict": verdict(&ex.verdict),
        "status": ex.status,
        "response_headers_added": added(&upstream_answer, &ex.response_headers),
        "response_body": text(&ex.response_body),
        "response_trailers": object(&ex.response_trailers),
        "upstream": ex.upstream_headers.as_ref().map(|h| json!({
            "request_headers_added": added(&request.headers, h),
            "request_headers_removed": added(h, &request.headers),
            "body": text(&ex.upstream_body),
            "trailers": object(&ex.upstream_trailers),
        })),
        "redis_calls": ex.redis_calls.iter().map(|c| json!({
            "cluster": c.cluster,
            "command": c.args.as_ref().map(|a| a.iter().map(|x| text(x)).collect::<Vec<_>>()),
            "reply": c.reply.as_ref().map(|r| text(r)),
            "failed": c.failed,
        })).collect::<Vec<_>>(),
        "http_calls": ex.http_calls.iter().map(|c| json!({
            "cluster": c.upstream,
            "headers": object(&c.headers),
            "body": text(&c.body),
            "answered": c.answer.is_some(),
        })).collect::<Vec<_>>(),
        "logs": ex.logs.iter().map(|l| json!([l.level, l.message])).collect::<Vec<_>>(),
        "properties_set": ex.properties.iter().map(|(k, v)| (k.clone(), Value::String(text(v)))).collect::<Map<_, _>>(),
        "fuel": ex.fuel,
        "host_calls": ex.host_calls,
        "fuel_total": ex.fuel_total,
        "host_calls_total": ex.host_calls_total,
        "memory_bytes": ex.memory_bytes,
    })
}
