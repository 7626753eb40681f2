//! Kit and token quota make no heap allocation per request once warm: a
//! streaming chat request (body rewritten to ask for usage), its quota read,
//! a 4 KB server-sent-event answer in 3 chunks scanned for usage, and the
//! charge written back; likewise streamed Anthropic, Gemini and Ollama
//! answers (bodies sent as they are), and answers of every API that end
//! with trailers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{allocations_during, CountingAllocator, FakeHost};
use kit::{Action, Filter, StreamId};
use token_quota::TokenQuota;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const REQUEST: &[u8] = br#"{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// The tokens used when the tests start.
const START: i64 = 10_000_000;

/// A 4 KB event stream whose last event reports 120 tokens.
fn answer() -> Vec<u8> {
    stream_of(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"once upon a time \"}}]}\n\n",
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":100,\"total_tokens\":120}}\n\ndata: [DONE]\n\n",
    )
}

/// About 4 KB of `event`, then `last`.
fn stream_of(event: &[u8], last: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < 3_900 {
        out.extend_from_slice(event);
    }
    out.extend_from_slice(last);
    out
}

/// A streamed answer of one API, reporting 120 tokens in its own shape.
struct Api {
    path: &'static [u8],
    content_type: &'static [u8],
    answer: Vec<u8>,
}

fn apis() -> Vec<Api> {
    vec![
        Api {
            path: b"/v1/chat/completions",
            content_type: b"text/event-stream",
            answer: answer(),
        },
        Api {
            path: b"/v1/messages",
            content_type: b"text/event-stream",
            answer: stream_of(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"once\"}}\n\n",
                b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":20,\"output_tokens\":100}}\n\n",
            ),
        },
        Api {
            path: b"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            content_type: b"text/event-stream",
            answer: stream_of(
                b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"once\"}]}}],\"usageMetadata\":{\"promptTokenCount\":20,\"totalTokenCount\":25}}\r\n\r\n",
                b"data: {\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":20,\"candidatesTokenCount\":90,\"thoughtsTokenCount\":10,\"totalTokenCount\":120}}\r\n\r\n",
            ),
        },
        Api {
            path: b"/api/chat",
            content_type: b"application/x-ndjson",
            answer: stream_of(
                b"{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"once\"},\"done\":false}\n",
                b"{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":20,\"eval_count\":100}\n",
            ),
        },
    ]
}

/// Answers the call the filter just sent, the kit's counting script: a
/// read (amount 0) gives the tokens used so far, a charge (or a batch of
/// them) adds its amount.
fn answer_redis(filter: &mut Filter<TokenQuota, FakeHost>, used: &mut i64) {
    let host = filter.host_mut();
    let call = host.last_call.as_ref().unwrap();
    let token = call.token;
    let path = call.headers.get(":path").unwrap();
    let amount = path.strip_suffix(b".raw").unwrap();
    let amount = &amount[amount.iter().rposition(|&b| b == b'/').unwrap() + 1..];
    let amount = amount
        .iter()
        .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    assert_eq!(amount % 120, 0, "reads add 0, charges 120 each");
    *used += amount;
    let mut digits = itoa::Buffer::new();
    host.call_response_headers.clear();
    host.call_response_headers.add(":status", b"200");
    host.call_response_body.clear();
    host.call_response_body.push(b':');
    host.call_response_body
        .extend_from_slice(digits.format(*used).as_bytes());
    host.call_response_body.extend_from_slice(b"\r\n");
    let len = host.call_response_body.len();
    filter.on_http_call_response(token, 1, len, false);
}

/// A filter whose rule `rule` holds a global quota of 10^9 tokens a minute.
fn with_global_quota(rule: &str) -> Filter<TokenQuota, FakeHost> {
    let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
    let config = format!(
        r#"{{"rule_name": "{rule}", "global_threshold": {{"token_per_minute": 1000000000}},
             "redis": {{"webdis_cluster": "webdis"}}}}"#
    );
    filter.configure(config.into_bytes()).unwrap();
    filter
}

/// Sends `api`'s chat request as `team-a` on a new stream of `context`,
/// answers its quota read, and hands the filter the answer's headers; the
/// stream, ready for the answer's body.
fn request_until_answer_headers(
    filter: &mut Filter<TokenQuota, FakeHost>,
    context: u32,
    api: &Api,
    used: &mut i64,
) -> StreamId {
    let host = filter.host_mut();
    host.next_request();
    host.request_headers.add(":method", b"POST");
    host.request_headers.add(":path", api.path);
    host.request_headers.add("content-length", b"93");
    host.request_headers.add("x-api-key", b"team-a");
    host.request_body.extend_from_slice(REQUEST);
    let stream = filter.open_stream(context);
    assert_eq!(filter.on_request_headers(stream, false), Action::Pause);
    assert_eq!(
        filter.on_request_body(stream, REQUEST.len(), true),
        Action::Pause
    );
    answer_redis(filter, used);
    let host = filter.host_mut();
    host.response_headers.add(":status", b"200");
    host.response_headers.add("content-type", api.content_type);
    assert_eq!(filter.on_response_headers(stream, false), Action::Continue);
    stream
}

fn one_request(filter: &mut Filter<TokenQuota, FakeHost>, context: u32, api: &Api, used: &mut i64) {
    let third = api.answer.len() / 3;
    one_request_cut(filter, context, api, used, &[third, 2 * third]);
}

/// [`one_request`] with the answer delivered in chunks cut at `cuts`.
fn one_request_cut(
    filter: &mut Filter<TokenQuota, FakeHost>,
    context: u32,
    api: &Api,
    used: &mut i64,
    cuts: &[usize],
) {
    let answer = &api.answer;
    let stream = request_until_answer_headers(filter, context, api, used);
    for i in 0..=cuts.len() {
        let from = if i == 0 { 0 } else { cuts[i - 1] };
        let to = cuts.get(i).copied().unwrap_or(answer.len());
        let chunk = &answer[from..to];
        let host = filter.host_mut();
        host.response_body.clear();
        host.response_body.extend_from_slice(chunk);
        let last = i == cuts.len();
        let action = filter.on_response_body(stream, chunk.len(), last);
        assert_eq!(
            action,
            if last {
                Action::Pause
            } else {
                Action::Continue
            }
        );
    }
    answer_redis(filter, used);
    filter.close_stream(stream);
}

/// [`one_request`] with an answer that ends with trailers, as from an
/// HTTP/2 upstream: every chunk comes without the end, and the end comes
/// with the trailers, held until the charge answers.
fn one_request_with_trailers(
    filter: &mut Filter<TokenQuota, FakeHost>,
    context: u32,
    api: &Api,
    used: &mut i64,
) {
    let stream = request_until_answer_headers(filter, context, api, used);
    let third = api.answer.len() / 3;
    let (head, rest) = api.answer.split_at(third);
    let (middle, last) = rest.split_at(third);
    for (i, chunk) in [head, middle, last].into_iter().enumerate() {
        let host = filter.host_mut();
        host.response_body.clear();
        host.response_body.extend_from_slice(chunk);
        let action = filter.on_response_body(stream, chunk.len(), false);
        // The last chunk completes the usage: charged, and held.
        assert_eq!(action == Action::Pause, i == 2, "chunk {i}");
    }
    assert_eq!(filter.on_response_trailers(stream), Action::Pause);
    let resumed = filter.host().resumed[1];
    answer_redis(filter, used);
    assert_eq!(filter.host().resumed[1], resumed + 1, "released");
    filter.close_stream(stream);
}

#[test]
fn streamed_answers_ending_with_trailers_do_not_allocate() {
    let mut filter = with_global_quota("zt");
    let apis = apis();
    let mut used = START;
    let mut context = 2;
    for api in &apis {
        for _ in 0..50 {
            one_request_with_trailers(&mut filter, context, api, &mut used);
            context += 1;
        }
    }
    let allocations = allocations_during(|| {
        for api in &apis {
            for _ in 0..250 {
                one_request_with_trailers(&mut filter, context, api, &mut used);
                context += 1;
            }
        }
    });
    assert_eq!(allocations, 0, "allocations in 1,000 warm requests");
    assert_eq!(
        used - START,
        120 * (50 + 250) * apis.len() as i64,
        "every answer was charged its usage, once"
    );
}

#[test]
fn the_counter_counts() {
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(vec![1u8]))),
        1
    );
}

#[test]
fn a_full_streaming_request_does_not_allocate() {
    let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
    filter
        .configure(
            br#"{"rule_name": "za", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 1000000000}]}],
                 "redis": {"webdis_cluster": "webdis"}}"#
                .to_vec(),
        )
        .unwrap();
    let api = &apis()[0];
    assert!(api.answer.len() >= 4_000);
    // Redis holds 8 digits all along: a reply whose count grows a digit
    // longer grows the reply buffers once, which is warm-up, not a cost
    // per request.
    let mut used = START;
    for i in 0..100 {
        one_request(&mut filter, i + 2, api, &mut used);
    }
    let allocations = allocations_during(|| {
        for i in 100..10_100 {
            one_request(&mut filter, i + 2, api, &mut used);
        }
    });
    assert_eq!(
        used - START,
        120 * 10_100,
        "every answer was charged its usage"
    );
    assert_eq!(
        filter.host().resumed,
        [10_100, 10_100],
        "every request and answer went on"
    );
    let sent: serde_json::Value = serde_json::from_slice(&filter.host().request_body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"],
        serde_json::Value::Bool(true)
    );
    assert_eq!(allocations, 0, "allocations in 10,000 warm requests");
}

#[test]
fn streamed_answers_of_every_api_do_not_allocate() {
    let mut filter = with_global_quota("zb");
    let apis = apis();
    // Redis holds 8 digits all along: a reply whose count grows a digit
    // longer grows the reply buffers once, which is warm-up, not a cost
    // per request.
    let mut used = START;
    let mut context = 2;
    for api in &apis {
        for _ in 0..50 {
            one_request(&mut filter, context, api, &mut used);
            context += 1;
        }
    }
    for api in &apis[1..] {
        let allocations = allocations_during(|| {
            for _ in 0..1_000 {
                one_request(&mut filter, context, api, &mut used);
                context += 1;
            }
        });
        assert_eq!(
            allocations,
            0,
            "allocations in 1,000 warm requests to {}",
            String::from_utf8_lossy(api.path)
        );
        // Not an API that takes `stream_options`: sent as it came.
        assert_eq!(filter.host().request_body, REQUEST);
    }
    assert_eq!(
        used - START,
        120 * (50 * 4 + 3 * 1_000),
        "every answer was charged its usage"
    );
}

/// The proxy hands a streamed body over in chunks of whatever arrived
/// together, which depends on timing: after a warm-up of 1.3 KB chunks, an
/// answer whose events arrive all at once (4 KB in one chunk), or a 40 KB
/// answer in one chunk and in uneven ones (longer than the kit's
/// `STREAM_PIECE`, so it reaches the plugin in pieces), must not grow the
/// buffers that carry it, and is still scanned and charged.
#[test]
fn answers_in_chunks_larger_than_before_do_not_allocate() {
    let mut filter = with_global_quota("zd");
    let small = &apis()[0];
    let mut long = String::new();
    while long.len() < 40_000 {
        long.push_str("data: {\"choices\":[{\"delta\":{\"content\":\"once upon a time \"}}]}\n\n");
    }
    long.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":100,\"total_tokens\":120}}\n\ndata: [DONE]\n\n");
    let large = Api {
        path: small.path,
        content_type: small.content_type,
        answer: long.into_bytes(),
    };
    assert!(large.answer.len() > 2 * kit::engine::STREAM_PIECE);
    // The fake proxy's own buffer (not the kit's) holds the largest chunk.
    filter.host_mut().response_body.reserve(large.answer.len());
    let mut used = START;
    let mut context = 2;
    for _ in 0..100 {
        one_request(&mut filter, context, small, &mut used);
        context += 1;
    }
    let uneven = [100, 30_000];
    let allocations = allocations_during(|| {
        for _ in 0..100 {
            one_request_cut(&mut filter, context, small, &mut used, &[]);
            one_request_cut(&mut filter, context + 1, &large, &mut used, &[]);
            one_request_cut(&mut filter, context + 2, &large, &mut used, &uneven);
            context += 3;
        }
    });
    assert_eq!(
        used - START,
        120 * (100 + 3 * 100),
        "every answer was charged its usage"
    );
    assert_eq!(allocations, 0, "allocations in 300 warm requests");
}

const JSON_ANSWER: &[u8] =
    br#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":100,"total_tokens":120}}"#;

/// Three concurrent requests of one counter: their reads share a call
/// (the first alone, the two behind it as one), their charges too (the
/// first alone, the two behind it batched), and the third client hangs up
/// while its charge waits.
fn shared_round(filter: &mut Filter<TokenQuota, FakeHost>, context: &mut u32, used: &mut i64) {
    let host = filter.host_mut();
    host.next_request();
    host.request_headers.add(":method", b"POST");
    host.request_headers.add(":path", b"/v1/chat/completions");
    host.request_headers.add("content-length", b"93");
    host.request_body.extend_from_slice(REQUEST);
    // The three requests are alike: the host's request stays as it is (a
    // fresh one would forget the call in flight).
    let mut streams = [kit::StreamId::default(); 3];
    for stream in &mut streams {
        *stream = filter.open_stream(*context);
        *context += 1;
        assert_eq!(filter.on_request_headers(*stream, false), Action::Pause);
        assert_eq!(
            filter.on_request_body(*stream, REQUEST.len(), true),
            Action::Pause
        );
    }
    let sent = filter.host().calls_sent;
    answer_redis(filter, used);
    answer_redis(filter, used);
    assert_eq!(filter.host().calls_sent, sent + 1, "one call for two reads");
    for &stream in &streams {
        let host = filter.host_mut();
        host.response_headers.clear();
        host.response_headers.add(":status", b"200");
        host.response_headers
            .add("content-type", b"application/json");
        assert_eq!(filter.on_response_headers(stream, false), Action::Continue);
        let host = filter.host_mut();
        host.response_body.clear();
        host.response_body.extend_from_slice(JSON_ANSWER);
        assert_eq!(
            filter.on_response_body(stream, JSON_ANSWER.len(), true),
            Action::Pause
        );
    }
    filter.close_stream(streams[2]);
    let sent = filter.host().calls_sent;
    answer_redis(filter, used);
    answer_redis(filter, used);
    assert_eq!(
        filter.host().calls_sent,
        sent + 1,
        "one call for two charges"
    );
    filter.close_stream(streams[0]);
    filter.close_stream(streams[1]);
}

#[test]
fn shared_reads_and_batched_charges_do_not_allocate() {
    let mut filter = with_global_quota("zc");
    let flags = 0x4000u64.to_le_bytes();
    filter
        .host_mut()
        .properties
        .set("response.flags", Some(&flags));
    let mut used = START;
    let mut context = 2;
    for _ in 0..50 {
        shared_round(&mut filter, &mut context, &mut used);
    }
    let allocations = allocations_during(|| {
        for _ in 0..1_000 {
            shared_round(&mut filter, &mut context, &mut used);
        }
    });
    assert_eq!(used - START, 120 * 3 * 1_050, "every answer was charged");
    assert_eq!(allocations, 0, "allocations in 1,000 warm rounds of three");
}

#[test]
fn hashed_per_header_keys_do_not_allocate() {
    // `key_hash`: the client's value is named in its counter key by 32 hex
    // digits of a keyed hash, computed on the stack.
    let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
    filter
        .configure(
            br#"{"rule_name": "zh", "key_hash": true, "key_hash_secret": "0123456789abcdef-secret",
                 "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 1000000000}]}],
                 "redis": {"webdis_cluster": "webdis"}}"#
                .to_vec(),
        )
        .unwrap();
    let api = &apis()[0];
    let mut used = START;
    for i in 0..100 {
        one_request(&mut filter, i + 2, api, &mut used);
    }
    let path = filter
        .host()
        .last_call
        .as_ref()
        .unwrap()
        .headers
        .get(":path")
        .unwrap();
    let path = String::from_utf8_lossy(path).into_owned();
    assert!(path.contains("per_header"), "{path}");
    assert!(!path.contains("team-a"), "the value is hashed: {path}");
    let allocations = allocations_during(|| {
        for i in 100..5_100 {
            one_request(&mut filter, i + 2, api, &mut used);
        }
    });
    assert_eq!(
        used - START,
        120 * 5_100,
        "every answer was charged its usage"
    );
    assert_eq!(allocations, 0, "allocations in 5,000 warm requests");
}
