//! The token quota's usage scanner on JSON bodies, event streams and JSON
//! lines, cut into chunks where the input says. Fed in chunks it answers
//! as it does on the whole body; on input serde_json reads, it finds the
//! usage the plainly written rules find in serde_json's reading.
//!
//! Input: a format byte, eight bytes naming up to four cuts, the body.
#![no_main]

use fuzz_support::reference::{reference_json, reference_sse, Judged};
use fuzz_support::{header, pieces};
use libfuzzer_sys::fuzz_target;
use token_quota::{scan_json, scan_sse, Format, Scanner};

fuzz_target!(|data: &[u8]| {
    let (head, body) = header::<9>(data);
    let format = match head[0] % 3 {
        0 => Format::Json,
        1 => Format::EventStream,
        _ => Format::JsonLines,
    };
    let mut scanner = Scanner::new(format);
    let mut seen_before_end = false;
    for piece in pieces(body, &head[1..]) {
        scanner.feed(piece);
        seen_before_end |= scanner.usage_seen();
    }
    let got = scanner.finish();
    let (whole, reference) = match format {
        Format::Json => (scan_json(body), reference_json(body)),
        Format::EventStream => (scan_sse(body), reference_sse(body)),
        // No plain reference reads JSON lines; the chunks must still not
        // change the answer.
        Format::JsonLines => {
            let mut once = Scanner::new(Format::JsonLines);
            once.feed(body);
            (once.finish(), None)
        }
    };
    assert_eq!(got, whole, "chunks changed the answer");
    if format == Format::Json {
        assert!(!seen_before_end, "a JSON body has no usage before its end");
    }
    if let Some(Judged::Valid(expected)) = reference {
        assert_eq!(got, expected, "serde_json reads another usage");
    }
});
