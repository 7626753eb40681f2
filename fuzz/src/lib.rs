//! What the fuzz targets share: the serde_json reference for the token
//! quota's scanner and rewriter, the generator of config-shaped JSON, and
//! cutting input into chunks where the fuzzer says.

pub mod config_gen;
pub mod lite_fold;

/// serde_json and the usage rules written plainly: the same reference the
/// token quota's differential tests use.
#[path = "../../plugins/token-quota/tests/reference/mod.rs"]
pub mod reference;

/// Cuts `bytes` into pieces at the offsets `cuts` names (each taken
/// modulo the length, sorted), so the fuzzer chooses chunk boundaries.
pub fn pieces<'a>(bytes: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .chunks(2)
        .map(|c| {
            let n = usize::from(c[0]) << 8 | usize::from(*c.get(1).unwrap_or(&0));
            n % (bytes.len() + 1)
        })
        .collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut from = 0;
    for cut in at {
        out.push(&bytes[from..cut]);
        from = cut;
    }
    out.push(&bytes[from..]);
    out
}

/// Splits fuzz input into a small header of `n` bytes (zero-padded) and
/// the rest.
pub fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

/// The headers every configured plugin is driven with: each kind of key a
/// rule can read (header, parameter, cookie, address) has a value.
pub const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/v1/chat/completions?key=k-1&model=m"),
    (":authority", "api.example.com"),
    ("x-api-key", "test-1"),
    ("authorization", "Bearer sk-1"),
    ("x-forwarded-for", "10.1.2.3, 192.0.2.1"),
    ("x-real-ip", "2001:db8::7"),
    ("cookie", "sid=abc; theme=dark"),
    ("x-mse-consumer", "team-a"),
];

/// Configures plugin `P` from `bytes` on a fake host; once it accepts
/// them, sends one request (with `body` when given) and its answer
/// (`response` as the body) through it, Redis answered by the kit's
/// in-memory Redis.
///
/// # Panics
/// When a refusal is not one line naming a reason: operators read it in
/// the proxy's log.
pub fn configure_and_drive<P: kit::Plugin>(bytes: &[u8], body: Option<&[u8]>, response: &[u8]) {
    use kit::fake::FakeHost;
    use kit::fake_request::Outcome;
    let mut filter = kit::Filter::<P, FakeHost>::new(FakeHost::new());
    if let Err(e) = filter.configure(bytes.to_vec()) {
        let line = e.to_string();
        assert!(
            !e.reason().is_empty(),
            "a refusal without a reason: {line:?}"
        );
        assert!(
            !line.contains('\n'),
            "a refusal of more than one line: {line:?}"
        );
        return;
    }
    let mut redis = kit::fake_redis::FakeRedis::new();
    let (stream, outcome) = match body {
        Some(body) => filter.send_request_with_body(REQUEST, body),
        None => filter.send_request(REQUEST),
    };
    if filter.settle(&mut redis, outcome) == Outcome::Continued {
        let headers = [(":status", "200"), ("content-type", "application/json")];
        let outcome = filter.send_response(stream, &headers, &[response]);
        filter.settle(&mut redis, outcome);
    }
    filter.close_stream(stream);
}
