//! `regexp:` limit keys: the kit's pattern compiler and matcher. Any
//! pattern compiles or is refused with a reason, any text matches or not,
//! never a panic; on patterns regex-lite also accepts, both answer alike
//! (outside the documented differences, below).
//!
//! Input: the pattern, then texts, separated by NUL bytes.
#![no_main]

use fuzz_support::lite_fold;
use kit::limits::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

/// Where Go's semantics (the kit's) and regex-lite's differ on purpose:
/// regex-lite's `\s` holds `\v` where Go's does not; regex-lite reads
/// `\<`, `\>` and `\b{...}` as word-boundary assertions where Go reads
/// an escaped `<`, `>` and `\b` before a literal `{`; under `(?i)` Go
/// folds `k`/`s` with KELVIN SIGN/LONG S, which regex-lite does not;
/// regex-lite skips whitespace inside a counted repetition's braces
/// (`a{1, 2}`) where Go reads a literal brace; a class that opens with
/// `--` (`[--d]`, `[^--d]`) is the range from `-` in Go and the two
/// characters `-` and `d` in regex-lite; and regex-lite folds some
/// classes otherwise (`folded`, see `fuzz_support::lite_fold`).
fn differs_by_design(pattern: &str, text: &str, folded: &FoldedClasses) -> bool {
    (text.contains('\u{b}') && (pattern.contains("\\s") || pattern.contains("\\S")))
        || pattern.contains("\\<")
        || pattern.contains("\\>")
        || pattern.contains("\\b{")
        || text.contains('\u{212a}')
        || text.contains('\u{17f}')
        || braces_hold_whitespace(pattern)
        || pattern.contains("[--")
        || pattern.contains("[^--")
        || match folded {
            FoldedClasses::Differ(set) => lite_fold::holds_any(text, *set),
            FoldedClasses::Unread => true,
        }
}

/// Whether some `{...}` of the pattern holds only digits, commas and
/// whitespace, with a digit and whitespace among them.
fn braces_hold_whitespace(pattern: &str) -> bool {
    pattern.match_indices('{').any(|(at, _)| {
        let inside = pattern[at + 1..].split('}').next().unwrap_or("");
        inside.contains(|c: char| c.is_ascii_digit())
            && inside.contains(char::is_whitespace)
            && inside
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c.is_whitespace())
    })
}

/// What the pattern's folded classes hold in Go and not in regex-lite (or
/// the other way round).
enum FoldedClasses {
    /// These ASCII characters (often none): a text without them is
    /// compared.
    Differ(u128),
    /// Unknown (regex-syntax could not read the pattern) and the pattern
    /// may fold a class: no text is compared.
    Unread,
}

fn folded_classes(pattern: &str) -> FoldedClasses {
    match lite_fold::ascii_regex_lite_folds_otherwise(pattern) {
        Some(set) => FoldedClasses::Differ(set),
        None if pattern.contains("(?") && pattern.contains('i') && pattern.contains('[') => {
            FoldedClasses::Unread
        }
        None => FoldedClasses::Differ(0),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let Some(source) = parts.next().and_then(|p| core::str::from_utf8(p).ok()) else {
        return;
    };
    let pattern = match Pattern::new(source) {
        Ok(pattern) => pattern,
        Err(e) => {
            assert!(!e.reason().is_empty());
            assert!(e.offset() <= source.len(), "offset past the pattern");
            return;
        }
    };
    let reference = regex_lite::Regex::new(source).ok();
    let folded = match reference {
        Some(_) => folded_classes(source),
        None => FoldedClasses::Differ(0),
    };
    for text in parts.take(8) {
        let matched = pattern.is_match(text);
        let (Some(reference), Ok(text)) = (&reference, core::str::from_utf8(text)) else {
            continue;
        };
        if differs_by_design(source, text, &folded) {
            continue;
        }
        assert_eq!(matched, reference.is_match(text), "{source:?} on {text:?}");
    }
});
