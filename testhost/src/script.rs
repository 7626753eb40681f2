//! The request files of the command-line runner: one JSON object a line,
//! either a request to replay or a step (move the clock, stop or start the
//! runner's Redis, script an `http_call` answer).
//!
//! ```text
//! {"method":"POST","path":"/v1/chat/completions","headers":{"x-user":"alice"},"body":["{\"a\":","1}"],
//!  "upstream":{"status":200,"headers":{"content-type":"application/json"},"body":"{}"},"repeat":3}
//! {"path":"/","advance_ms_each":10,"repeat":1000}
//! {"advance_ms":60000}
//! {"redis":"stop"}
//! {"http_answer":{"cluster":"outbound|80||auth.static","status":200,"body":"ok"}}
//! ```

use serde_json::Value;

use crate::exchange::{Request, Upstream};
use crate::state::{HttpAnswer, Pairs};

/// What the runner's Redis should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisStep {
    Stop,
    Start,
    Freeze,
    Thaw,
}

/// One line of a request file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `advance_ms` moves the clock before each repetition.
    Request {
        request: Box<Request>,
        repeat: u32,
        advance_ms: u64,
    },
    Advance {
        ms: u64,
    },
    Redis(RedisStep),
    HttpAnswer {
        cluster: String,
        answer: HttpAnswer,
    },
}

fn text(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        Value::Null => Vec::new(),
        other => other.to_string().into_bytes(),
    }
}

/// Headers as an object (`{"k":"v"}`) or as pairs (`[["k","v"]]`).
fn pairs(v: Option<&Value>, field: &str) -> Result<Pairs, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(m
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), text(v)))
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([k, v]) => Ok((text(k).to_ascii_lowercase(), text(v))),
                _ => Err(format!("{field}: each pair must be [name, value], got {p}")),
            })
            .collect(),
        Some(other) => Err(format!(
            "{field}: must be an object or a list of pairs, got {other}"
        )),
    }
}

/// A body as one string or a list of chunks.
fn chunks(v: Option<&Value>, field: &str) -> Result<Vec<Vec<u8>>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone().into_bytes()]),
        Some(Value::Array(items)) => Ok(items.iter().map(text).collect()),
        Some(Value::Object(_)) => Ok(v
            .map(|o| vec![o.to_string().into_bytes()])
            .unwrap_or_default()),
        Some(other) => Err(format!(
            "{field}: must be a string, a list of chunks or a JSON object, got {other}"
        )),
    }
}

fn number(v: Option<&Value>, field: &str, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(n) => n
            .as_u64()
            .ok_or_else(|| format!("{field}: must be a non-negative integer, got {n}")),
    }
}

/// Parses one line.
///
/// # Errors
/// One line naming the field and the reason.
pub fn parse_line(line: &str) -> Result<Step, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("each line must be a JSON object")?;
    if let Some(ms) = obj.get("advance_ms") {
        return Ok(Step::Advance {
            ms: number(Some(ms), "advance_ms", 0)?,
        });
    }
    if let Some(what) = obj.get("redis") {
        let step = match what.as_str() {
            Some("stop") => RedisStep::Stop,
            Some("start") => RedisStep::Start,
            Some("freeze") => RedisStep::Freeze,
            Some("thaw") => RedisStep::Thaw,
            _ => {
                return Err(format!(
                    "redis: must be stop, start, freeze or thaw, got {what}"
                ))
            }
        };
        return Ok(Step::Redis(step));
    }
    if let Some(a) = obj.get("http_answer") {
        let cluster = a
            .get("cluster")
            .and_then(Value::as_str)
            .ok_or("http_answer.cluster: required string")?
            .to_string();
        let status = number(a.get("status"), "http_answer.status", 200)?;
        let mut headers = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        headers.extend(pairs(a.get("headers"), "http_answer.headers")?);
        let body = chunks(a.get("body"), "http_answer.body")?.concat();
        return Ok(Step::HttpAnswer {
            cluster,
            answer: HttpAnswer {
                headers,
                body,
                trailers: Vec::new(),
            },
        });
    }
    let method = obj.get("method").and_then(Value::as_str).unwrap_or("GET");
    let path = obj.get("path").and_then(Value::as_str).unwrap_or("/");
    let authority = obj
        .get("authority")
        .and_then(Value::as_str)
        .unwrap_or("example.com");
    let mut headers = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), authority.as_bytes().to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    headers.extend(pairs(obj.get("headers"), "headers")?);
    let upstream = match obj.get("upstream") {
        None => Upstream::default(),
        Some(u) => Upstream {
            status: number(u.get("status"), "upstream.status", 200)? as u32,
            headers: pairs(u.get("headers"), "upstream.headers")?,
            body: chunks(u.get("body"), "upstream.body")?,
            trailers: pairs(u.get("trailers"), "upstream.trailers")?,
        },
    };
    let properties = match obj.get("properties") {
        None => Default::default(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Some(other) => return Err(format!("properties: must be an object, got {other}")),
    };
    let repeat = number(obj.get("repeat"), "repeat", 1)?;
    let advance_ms = number(obj.get("advance_ms_each"), "advance_ms_each", 0)?;
    Ok(Step::Request {
        advance_ms,
        request: Box::new(Request {
            headers,
            body: chunks(obj.get("body"), "body")?,
            trailers: pairs(obj.get("trailers"), "trailers")?,
            upstream,
            properties,
        }),
        repeat: u32::try_from(repeat.max(1)).map_err(|_| "repeat: too large".to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_with_chunks_headers_and_upstream() {
        let step = parse_line(
            r#"{"method":"POST","path":"/v1","headers":{"X-User":"a"},"body":["ab","c"],
                "trailers":{"x-sum":"1"},
                "upstream":{"status":201,"headers":[["content-type","text/plain"]],"body":"ok","trailers":[["grpc-status","0"]]},"repeat":2}"#,
        )
        .unwrap();
        let Step::Request {
            request, repeat, ..
        } = step
        else {
            panic!("{step:?}")
        };
        assert_eq!(repeat, 2);
        assert_eq!(request.body, vec![b"ab".to_vec(), b"c".to_vec()]);
        assert!(request
            .headers
            .contains(&(b"x-user".to_vec(), b"a".to_vec())));
        assert_eq!(request.upstream.status, 201);
        assert_eq!(request.upstream.body, vec![b"ok".to_vec()]);
        assert_eq!(request.trailers, [(b"x-sum".to_vec(), b"1".to_vec())]);
        assert_eq!(
            request.upstream.trailers,
            [(b"grpc-status".to_vec(), b"0".to_vec())]
        );
    }

    #[test]
    fn steps_and_errors() {
        assert_eq!(
            parse_line(r#"{"advance_ms":5}"#),
            Ok(Step::Advance { ms: 5 })
        );
        assert_eq!(
            parse_line(r#"{"redis":"stop"}"#),
            Ok(Step::Redis(RedisStep::Stop))
        );
        assert!(parse_line(r#"{"redis":"explode"}"#)
            .unwrap_err()
            .starts_with("redis:"));
        assert!(parse_line(r#"{"headers":5}"#)
            .unwrap_err()
            .starts_with("headers:"));
        assert!(parse_line("[1]").is_err());
    }
}
