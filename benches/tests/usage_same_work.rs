//! The `usage_scan` group compares like with like: on the benchmark inputs,
//! fed the same way, the scanner and every alternative report the same
//! usage, and the inputs are what the group says they are.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use benches::usage::{
    json_bodies, json_body, serde_json_value, serde_usage_only, serde_usage_only_utf8_checked,
    simd_json_usage_only, simd_json_value, sse_body, sse_chunks, sse_scanner, sse_serde_json_value,
    sse_serde_usage_only, sse_serde_usage_only_utf8_checked, sse_simd_json_usage_only,
    sse_simd_json_value, JSON_USAGE, SSE_USAGE, TARGET_LEN,
};
use token_quota::{scan_json, scan_sse, JsonScanner, Scan};

/// Every JSON implementation the group times, by its benchmark name.
fn json_results(body: &[u8]) -> Vec<(&'static str, Scan)> {
    vec![
        ("token_quota_scan_json", scan_json(body)),
        ("serde_json_value", serde_json_value(body)),
        ("serde_usage_only_ignored_any", serde_usage_only(body)),
        (
            "serde_usage_only_utf8_checked",
            serde_usage_only_utf8_checked(body),
        ),
        (
            "simd_json_borrowed_value",
            simd_json_value(&mut body.to_vec()),
        ),
        (
            "simd_json_serde_usage_only",
            simd_json_usage_only(&mut body.to_vec()),
        ),
    ]
}

/// Every event-stream implementation the group times, over `chunks`
/// (copied for each, as the parsers in place rewrite them).
fn sse_results(chunks: &[Vec<u8>]) -> Vec<(&'static str, Scan)> {
    let mut buffers = simd_json::Buffers::default();
    let fresh = || chunks.to_vec();
    vec![
        ("token_quota_sse_scanner", sse_scanner(chunks)),
        (
            "serde_json_value_per_event",
            sse_serde_json_value(&mut fresh()),
        ),
        (
            "serde_usage_only_per_event",
            sse_serde_usage_only(&mut fresh()),
        ),
        (
            "serde_usage_only_utf8_checked_per_event",
            sse_serde_usage_only_utf8_checked(&mut fresh()),
        ),
        (
            "simd_json_borrowed_value_per_event",
            sse_simd_json_value(&mut fresh(), &mut buffers),
        ),
        (
            "simd_json_serde_usage_only_per_event",
            sse_simd_json_usage_only(&mut fresh(), &mut buffers),
        ),
    ]
}

#[test]
fn json_implementations_report_the_same_usage() {
    for (size, body) in json_bodies() {
        for (name, scan) in json_results(&body) {
            assert_eq!(scan, Scan::Found(JSON_USAGE), "{size} {name}");
        }
        // Chunked as it would arrive, the scanner says the same.
        for len in [1, 7, 16 * 1024] {
            let mut scanner = JsonScanner::new();
            for chunk in body.chunks(len) {
                scanner.feed(chunk);
            }
            assert_eq!(scanner.finish(), Scan::Found(JSON_USAGE), "{size} {len}");
        }
    }
}

#[test]
fn json_bodies_are_the_sizes_named() {
    let [small, medium, large] = json_bodies();
    assert_eq!(small.0, "json_500b");
    assert!((450..700).contains(&small.1.len()), "{}", small.1.len());
    assert_eq!(medium.0, "json_8k");
    assert!((8 * 1024..9 * 1024).contains(&medium.1.len()));
    assert_eq!(large.0, "json_64k");
    assert_eq!(large.1, json_body());
    for (_, body) in [small, medium] {
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(doc["choices"][0]["message"]["content"].is_string());
    }
}

#[test]
fn sse_implementations_report_the_same_usage() {
    let body = sse_body();
    let chunks = sse_chunks(&body);
    assert_eq!(scan_sse(&body), Scan::Found(SSE_USAGE));
    for (name, scan) in sse_results(&chunks) {
        assert_eq!(scan, Scan::Found(SSE_USAGE), "{name}");
    }
    // Whole, or cut elsewhere (inside `data:`, between the two `\n` of a
    // blank line, inside the usage event), the readers agree too.
    let event = body.iter().position(|&b| b == b'\n').unwrap() + 2;
    let usage = body.len() - 300;
    for cuts in [
        vec![],
        vec![3, event - 1, event + 2],
        vec![event - 1, usage],
        vec![usage, body.len() - 1],
    ] {
        let mut chunks = Vec::new();
        let mut from = 0;
        for at in cuts.iter().copied().chain([body.len()]) {
            chunks.push(body[from..at].to_vec());
            from = at;
        }
        for (name, scan) in sse_results(&chunks) {
            assert_eq!(scan, Scan::Found(SSE_USAGE), "{name} cut at {cuts:?}");
        }
    }
}

#[test]
fn json_body_is_as_described() {
    let body = json_body();
    assert!((TARGET_LEN..TARGET_LEN + 1024).contains(&body.len()));
    let text = std::str::from_utf8(&body).unwrap();
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let content = doc["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.len() > 60 * 1024);
    for needle in [
        "\"usage\": {\"total_tokens\": 1}",
        "\n",
        "\\",
        "\t",
        "é",
        "東京",
        "😀",
    ] {
        assert!(content.contains(needle), "{needle:?}");
    }
    for escape in [r#"\""#, r"\n", r"\\", r"\u00e9", r"\/"] {
        assert!(text.contains(escape), "{escape}");
    }
    // `usage` is the last member.
    let usage = text.rfind("\"usage\":{").unwrap();
    assert!(usage > text.len() - 400);
    assert!(!text[usage..].contains("\"content\""));
}

#[test]
fn sse_body_is_as_described() {
    let body = sse_body();
    assert!((TARGET_LEN - 1024..=TARGET_LEN).contains(&body.len()));
    let text = std::str::from_utf8(&body).unwrap();
    let events: Vec<&str> = text.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    // The role event, one event per output token, the stop event, the
    // usage event and [DONE].
    assert_eq!(Some(events.len() as u64 - 4), SSE_USAGE.output);
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let mut usages = 0;
    for event in &events[..events.len() - 1] {
        let data = event.strip_prefix("data: ").unwrap();
        assert!(!data.contains('\n'));
        let doc: serde_json::Value = serde_json::from_str(data).unwrap();
        if !doc["usage"].is_null() {
            usages += 1;
        }
    }
    assert_eq!(usages, 1);
    assert!(events[events.len() - 2].contains("\"choices\":[],\"usage\":{"));
    assert!(text.contains(r#"{"content":" \"usage\":"}"#));
    assert!(text.contains(r#"{"content":" {\"total_tokens\": 1}"}"#));
    assert!(text.contains("東京") && text.contains(r"\u00e9"));

    // Four 16 KiB chunks (the last a little short), cut inside events, so
    // the readers carry a part.
    let chunks = sse_chunks(&body);
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks.concat(), body);
    for chunk in &chunks[..3] {
        assert_eq!(chunk.len(), 16 * 1024);
        assert!(!chunk.ends_with(b"\n\n"));
    }
}

/// Where the readers differ: serde's `IgnoredAny` and the scanner's skim
/// do not check the UTF-8 of the strings they skip; the readers that build
/// a value (and the UTF-8-checked serde row) do. Not in the benchmark
/// inputs, which are valid UTF-8.
#[test]
fn skipping_readers_do_not_validate_skipped_utf8() {
    let mut body = json_body();
    let at = body.windows(4).position(|w| w == b"Sure").unwrap();
    body[at] = 0xff;
    let results = json_results(&body);
    for (name, scan) in &results {
        let expected = if ["serde_usage_only_ignored_any", "token_quota_scan_json"].contains(name) {
            Scan::Found(JSON_USAGE)
        } else {
            Scan::Malformed
        };
        assert_eq!(*scan, expected, "{name}");
    }
}

/// Nor do they check `\u` escapes for surrogate pairs in the strings they
/// skip.
#[test]
fn skipping_readers_take_a_lone_surrogate_escape() {
    let body = String::from_utf8(json_body())
        .unwrap()
        .replacen(r"\u00e9", r"\ud800", 1);
    for scan in [
        scan_json(body.as_bytes()),
        serde_usage_only(body.as_bytes()),
        serde_usage_only_utf8_checked(body.as_bytes()),
    ] {
        assert_eq!(scan, Scan::Found(JSON_USAGE));
    }
    assert_eq!(serde_json_value(body.as_bytes()), Scan::Malformed);
}

/// The same in the stream: invalid UTF-8 in one chunk event.
#[test]
fn skipping_readers_do_not_validate_skipped_utf8_per_event() {
    let mut body = sse_body();
    let at = body.windows(4).position(|w| w == b"Sure").unwrap();
    body[at] = 0xff;
    for (name, scan) in sse_results(&sse_chunks(&body)) {
        let expected = if ["serde_usage_only_per_event", "token_quota_sse_scanner"].contains(&name)
        {
            Scan::Found(SSE_USAGE)
        } else {
            Scan::Malformed
        };
        assert_eq!(scan, expected, "{name}");
    }
}

/// What the scanner's skim still refuses, as every reader here does: a
/// raw control byte in a skipped string, an unknown escape, a bracket
/// that does not match, a missing `,` between the top-level members. (A
/// missing `,` inside a skipped array or object it does not see.)
#[test]
fn every_reader_refuses_broken_structure() {
    let text = String::from_utf8(json_body()).unwrap();
    for broken in [
        text.replacen("Sure!", "Sure\t!", 1),
        text.replacen("Sure!", "Sure\\q!", 1),
        text.replacen("\"annotations\":[]", "\"annotations\":[}", 1),
        text.replacen(
            "\"service_tier\":\"default\"",
            "\"service_tier\":\"default\" 1",
            1,
        ),
    ] {
        assert_ne!(broken, text);
        for (name, scan) in json_results(broken.as_bytes()) {
            assert_eq!(scan, Scan::Malformed, "{name}: {}", &broken[..200]);
        }
    }
}

/// Any change to a token count shows in every implementation.
#[test]
fn implementations_follow_the_input() {
    let body = String::from_utf8(json_body())
        .unwrap()
        .replace("\"total_tokens\":15680", "\"total_tokens\":7");
    let expected = Scan::Found(token_quota::Usage {
        total: 7,
        ..JSON_USAGE
    });
    for (name, scan) in json_results(body.as_bytes()) {
        assert_eq!(scan, expected, "{name}");
    }
    let body = String::from_utf8(sse_body())
        .unwrap()
        .replace("\"total_tokens\":1329", "\"total_tokens\":-1");
    for (name, scan) in sse_results(&sse_chunks(body.as_bytes())) {
        assert_eq!(scan, Scan::Malformed, "{name}");
    }
}
