//! The token quota's request rewriter: on a body serde_json reads, a
//! streaming request without `stream_options.include_usage: true` gets it
//! and is otherwise the same request, and the new body is valid JSON;
//! every other valid body is left unchanged; a body serde_json refuses is
//! never called JSON.
#![no_main]

use fuzz_support::reference::{needs_rewrite, parse};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use token_quota::{include_usage, Rewrite};

fuzz_target!(|body: &[u8]| {
    let mut out = Vec::new();
    let result = include_usage(body, &mut out);
    if result != Rewrite::Rewritten {
        assert!(out.is_empty(), "output without a rewrite");
    }
    // `None`: serde_json refuses for a reason of its own (its depth limit,
    // floats beyond f64) that the rewriter rightly does not share.
    let Some(parsed) = parse(body) else {
        return;
    };
    match parsed {
        Err(()) => assert_eq!(result, Rewrite::NotJson),
        Ok(doc) if needs_rewrite(&doc) => {
            assert_eq!(result, Rewrite::Rewritten);
            let new: Value = match serde_json::from_slice(&out) {
                Ok(new) => new,
                Err(e) => panic!("the rewritten body is not JSON: {e}"),
            };
            assert_eq!(new["stream_options"]["include_usage"], Value::Bool(true));
            let mut old = doc;
            if let Some(object) = old.as_object_mut() {
                let options = object.entry("stream_options").or_insert(Value::Null);
                if options.is_null() {
                    *options = serde_json::json!({});
                }
                options["include_usage"] = Value::Bool(true);
            }
            assert_eq!(new, old, "the rewrite changed more than include_usage");
            let again = out.clone();
            assert_eq!(include_usage(&again, &mut out), Rewrite::Unchanged);
        }
        Ok(_) => assert_eq!(result, Rewrite::Unchanged),
    }
});
