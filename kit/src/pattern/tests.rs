use super::*;

fn matches(pattern: &str, text: &[u8]) -> bool {
    Pattern::new(pattern)
        .unwrap_or_else(|e| panic!("{pattern:?} refused: {e}"))
        .is_match(text)
}

/// Where regex-lite answers false: Go folds every letter a class range
/// holds, and `,-d` holds `A`-`Z`.
#[test]
fn a_folded_range_holds_the_other_case() {
    assert!(matches("(?i)a[-,-d*]", b"aidd"));
    assert!(matches("(?i)[,-d]", b"z"));
    assert!(!matches("[,-d]", b"z"));
}

/// Where regex-lite answers true: Go folds a negated item of a class
/// before negating it, so no letter is left in either case.
#[test]
fn a_folded_negated_item_holds_no_letter() {
    assert!(!matches("(?i)[[:^lower:]]", b"A"));
    assert!(!matches("(?i)[[:^upper:]]", b"a"));
    assert!(matches("(?i)[[:^upper:]]", b"1"));
    assert!(matches("[[:^lower:]]", b"A"));
}

/// Where regex-lite differs, as it skips whitespace inside a counted
/// repetition's braces: Go reads a brace it cannot read as `{n}`, `{n,}`
/// or `{n,m}` as a literal brace, spaces and all.
#[test]
fn braces_with_whitespace_are_literal() {
    assert!(matches("^a{1, 2}$", b"a{1, 2}"));
    assert!(!matches("^a{1, 2}$", b"aa"));
    assert!(matches("-d]{0,\x0c7}", b"(?i)a[5-d]{0,\x0c7}"));
    assert!(matches("^a{ 2}$", b"a{ 2}"));
    assert!(matches("^a{1,2}$", b"aa"));
}

/// Go reads `-` right after the bracket (or `^`) as the start of a range
/// when another `-` and a character follow; regex-lite reads the
/// characters one by one (found by the `pattern` fuzz target).
#[test]
fn a_class_opening_with_two_dashes_is_a_range_from_the_dash() {
    assert!(matches("^[--d]$", b"0"));
    assert!(matches("^[--d]$", b"A"));
    assert!(!matches("^[--d]$", b"e"));
    assert!(!matches("^[^--d]$", b"a"));
    assert!(matches("^[^--d]$", b"e"));
    assert!(matches("^[---]$", b"-"));
    assert!(!matches(".(?i)][^--d+W\\w\\\\]", b"\x01[-]6]an.]^-][[.(??"));
}

#[test]
fn supported_syntax_matches_as_go_does() {
    let cases: &[(&str, &[u8], bool)] = &[
        ("", b"", true),
        ("", b"anything", true),
        ("abc", b"xxabcxx", true),
        ("abc", b"ab", false),
        (r"a\.b", b"a.b", true),
        (r"a\.b", b"axb", false),
        ("a.b", b"axb", true),
        ("a.b", b"a\nb", false),
        (r"\\\-\/\ ", b"\\-/ ", true),
        (r"\t\n\r\f\v\a", b"\t\n\r\x0c\x0b\x07", true),
        (r"\x41\x{42}\x{1F600}", "AB😀".as_bytes(), true),
        ("[abc]", b"xbx", true),
        ("[abc]", b"xyz", false),
        ("^[a-z0-9_]+$", b"user_42", true),
        ("^[a-z0-9_]+$", b"User_42", false),
        ("^[^a-z]+$", b"ABC\n", true),
        ("[]a]", b"]", true),
        ("[^]a]", b"]", false),
        ("^[a-]$", b"-", true),
        ("^[-a]$", b"-", true),
        ("^[a-c-e]+$", b"b-e", true),
        (r"^[\-\]\\]+$", b"-]\\", true),
        (r"^[\d.]+$", b"10.0.0.1", true),
        (r"^[^\d]$", b"x", true),
        (r"^[\D]$", b"5", false),
        ("^[[:alpha:][:digit:]]+$", b"abc123", true),
        ("^[[:^alpha:]]+$", b"123", true),
        ("^[[:^alpha:]]+$", b"12a", false),
        ("^[[:xdigit:]]+$", b"DeadBeef", true),
        ("^[[:punct:]]$", b"~", true),
        ("[[:foo]", b":", true),
        (r"^\d+$", b"0123456789", true),
        (r"^\d+$", b"12a", false),
        (r"^\w+$", b"Az_09", true),
        (r"^\w+$", "é".as_bytes(), false),
        (r"^\s$", b"\x0b", false),
        (r"^\s+$", b" \t\n\r\x0c", true),
        (r"^\S\W\D$", b"x-y", true),
        ("^abc", b"abcd", true),
        ("^abc", b"xabc", false),
        ("abc$", b"xabc", true),
        ("abc$", b"abc\n", false),
        (r"\Aab\z", b"ab", true),
        (r"\bfoo\b", b"a foo b", true),
        (r"\bfoo\b", b"afoo", false),
        (r"\Bfoo", b"afoo", true),
        (r"foo\b", "fooé".as_bytes(), true),
        ("(gold|silver)-tier", b"silver-tier", true),
        ("(?:gold|silver)-tier", b"bronze-tier", false),
        ("(?P<tier>gold)|(?<other>x)", b"gold", true),
        ("^(a|)$", b"", true),
        ("^(|a)b$", b"ab", true),
        ("^a|b$", b"xxb", true),
        ("^ab*c$", b"ac", true),
        ("^ab+c$", b"ac", false),
        ("^ab?c$", b"abc", true),
        ("^a{3}$", b"aaa", true),
        ("^a{3}$", b"aaaa", false),
        ("^a{2,}$", b"aaaaa", true),
        ("^a{2,}$", b"a", false),
        ("^a{1,3}$", b"aaa", true),
        ("^a{1,3}$", b"aaaa", false),
        ("^a{0}$", b"", true),
        ("^(ab){2}$", b"abab", true),
        ("^a*?b+?c??d{1,2}?$", b"bd", true),
        ("^a{$", b"a{", true),
        ("^a{x}$", b"a{x}", true),
        ("^a{,3}$", b"a{,3}", true),
        ("^{$", b"{", true),
        ("^}]$", b"}]", true),
        (r"^\Q.*+\E$", b".*+", true),
        (r"^\Qab\E*$", b"abbb", true),
        (r"^(?:)*$", b"", true),
        (r"^(?:(?:){1000}){1000}x$", b"x", true),
        ("^(^)*$", b"", true),
        ("^é+$", "ééé".as_bytes(), true),
        ("^.$", "é".as_bytes(), true),
        ("^.$", "日".as_bytes(), true),
        ("^[é-ë]$", "ê".as_bytes(), true),
        ("^[^a]$", "日".as_bytes(), true),
        ("^[^a]$", b"\n", true),
        // Invalid UTF-8 bytes read as U+FFFD, one per byte, as in Go.
        ("^.$", b"\xff", true),
        ("^..$", b"\xe2\x82", true),
        ("^\u{FFFD}$", b"\xc0", true),
        (r"^\x{FFFD}{2}$", b"\xed\xa0", true),
        ("^a.c$", b"a\xffc", true),
    ];
    for &(pattern, text, want) in cases {
        assert_eq!(
            matches(pattern, text),
            want,
            "{pattern:?} on {:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn unsupported_syntax_is_refused_with_a_reason() {
    let cases = [
        ("(", "missing closing ) (at byte 0)"),
        ("a)", "unmatched ) (at byte 1)"),
        ("[a", "missing closing ] (at byte 0)"),
        ("[]", "missing closing ] (at byte 0)"),
        ("a\\", "trailing backslash (at byte 1)"),
        ("*a", "missing argument to repetition operator (at byte 0)"),
        ("a|*", "missing argument to repetition operator (at byte 2)"),
        ("{2}", "missing argument to repetition operator (at byte 0)"),
        ("(+)", "missing argument to repetition operator (at byte 1)"),
        ("a**", "nested repetition operator is not allowed (at byte 2)"),
        ("a{2}{3}", "nested repetition operator is not allowed (at byte 4)"),
        ("a*??", "nested repetition operator is not allowed (at byte 3)"),
        ("a{1001}", "repetition count above 1000 (at byte 1)"),
        ("a{3,2}", "invalid repetition: {n,m} with m < n (at byte 1)"),
        ("[z-a]", "invalid class range: end before start (at byte 1)"),
        ("[a-\\d]", "invalid escape (at byte 3)"),
        ("[[:nope:]]", "unknown POSIX class (at byte 1)"),
        (r"(a)\1", "backreferences are not supported (at byte 3)"),
        ("(?P<n>a)(?P=n)", "backreferences are not supported (at byte 8)"),
        (r"\0", "octal escapes are not supported (at byte 0)"),
        ("a(?=b)", "lookahead (?= is not supported (at byte 1)"),
        ("a(?!b)", "lookahead (?! is not supported (at byte 1)"),
        ("(?<=a)b", "lookbehind (?<= is not supported (at byte 0)"),
        ("(?<!a)b", "lookbehind (?<! is not supported (at byte 0)"),
        ("(?m)^a$", "multi-line mode (?m) is not supported (at byte 0)"),
        ("a(?im-s:b)", "multi-line mode (?m) is not supported (at byte 1)"),
        ("(?<>a)", "invalid group name (at byte 0)"),
        ("(?P<a-b>a)", "invalid group name (at byte 0)"),
        (r"\p{Greek}", "Unicode classes \\p{...} are not supported (at byte 0)"),
        (r"[\pL]", "Unicode classes \\p{...} are not supported (at byte 1)"),
        (r"\q", "invalid escape (at byte 0)"),
        (r"\é", "invalid escape (at byte 0)"),
        (r"\Z", "invalid escape (at byte 0)"),
        (r"[\b]", "invalid escape (at byte 1)"),
        (r"\xZZ", "invalid \\x escape: use \\xFF or \\x{10FFFF} (at byte 0)"),
        (r"\x{110000}", "invalid \\x escape: use \\xFF or \\x{10FFFF} (at byte 0)"),
        (r"\x{}", "invalid \\x escape: use \\xFF or \\x{10FFFF} (at byte 0)"),
        (
            ".{0,1000}",
            "pattern is too large: more than 1000 instructions once counted repetitions are expanded (at byte 9)",
        ),
    ];
    for (pattern, want) in cases {
        match Pattern::new(pattern) {
            Ok(compiled) => panic!("{pattern:?} accepted: {compiled:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "{pattern:?}"),
        }
    }
}

#[test]
fn flags_match_as_go_does() {
    let kelvin = "\u{212A}".as_bytes();
    let long_s = "\u{17F}".as_bytes();
    let cases: &[(&str, &[u8], bool)] = &[
        ("(?i)gold", b"GoLD", true),
        ("(?i)^gold-\\d+$", b"GOLD-12", true),
        ("gold", b"GOLD", false),
        // `(?flags:re)` sets them for that group only.
        ("(?i:a)b", b"AB", false),
        ("(?i:a)b", b"Ab", true),
        // `(?flags)` lasts to the end of the enclosing group, across `|`.
        ("a(?i)b|c", b"C", true),
        ("a(?i)b|c", b"aB", true),
        ("a(?i)b|c", b"AB", false),
        ("(a(?i)b|c)d", b"CD", false),
        ("(a(?i)b|c)d", b"Cd", true),
        ("((?i)a)a", b"AA", false),
        ("(?:(?i)a)A", b"aA", true),
        ("(?i)(?-i)a", b"A", false),
        ("(?i)(?-i:a)A", b"Aa", false),
        ("(?i)(?-i:a)A", b"aa", true),
        ("(?i:(?P<tier>gold)|(?<x>silver))", b"SILVER", true),
        ("(?i:(?:go)+)ld", b"gOGold", true),
        (r"(?i)\Qa.b\E", b"A.B", true),
        (r"(?i)\x41\x{62}", b"aB", true),
        ("(?i)a1-_", b"A1-_", true),
        // Classes fold before they are negated; \d \s and assertions
        // do not change.
        ("(?i)^[a-c]+$", b"AbC", true),
        ("(?i)[^a]", b"A", false),
        ("(?i)[^a]", b"b", true),
        ("(?i)^[Z-a]$", b"z", true),
        ("(?i)^[Z-a]$", b"A", true),
        ("(?i)^[Z-a]$", b"b", false),
        ("(?i)[[:upper:]]", b"a", true),
        ("(?i)[[:^lower:]]", b"A", false),
        ("(?i)[[:^lower:]]", b"1", true),
        (r"(?i)^\d\s\S\D$", b"1 xY", true),
        (r"(?i)\bA\b", b"-a-", true),
        ("(?i)^.$", b"\n", false),
        // `s`: `.` matches `\n` too.
        ("(?s)^.$", b"\n", true),
        ("(?s:.)", b"\n", true),
        ("(?s:a).", b"a\n", false),
        ("(?is-s)^.$", b"\n", false),
        ("(?si)^A.$", b"a\n", true),
        // `U` swaps greedy and lazy, which match the same texts.
        ("(?U)^a+?b*$", b"aab", true),
        ("(?iU:^A+$)", b"aa", true),
        // Clearing multi-line mode, which is never on, changes nothing.
        ("(?-m)^a$", b"a", true),
        ("(?i-m)^a$", b"A", true),
        // As in Go, `(?)` sets no flag, and `(?:` is a group without flags.
        ("a(?)b", b"ab", true),
        ("(?:A)", b"a", false),
        // Outside `(?i)`, non-ASCII characters are fine.
        ("(?i:a)é", "Aé".as_bytes(), true),
        // Go's simple folding: `k` and `s` have a third case.
        ("(?i)k", kelvin, true),
        ("(?i)K", kelvin, true),
        ("(?i)s", long_s, true),
        ("(?i)S", long_s, true),
        (r"(?i)\x6B", kelvin, true),
        (r"(?i)\Qs\E", long_s, true),
        ("k", kelvin, false),
        ("s", long_s, false),
        ("(?i)x", kelvin, false),
        ("(?i)[a-z]", kelvin, true),
        ("(?i)[A-L]", kelvin, true),
        ("(?i)[a-j]", kelvin, false),
        ("(?i)[[:lower:]]", long_s, true),
        ("(?i)[^k]", kelvin, false),
        ("(?i)[^k]", long_s, true),
        ("(?i)[^s]", long_s, false),
        ("[^s]", long_s, true),
        // As in Go, `\w` folds too: it holds the letters.
        (r"(?i)\w", kelvin, true),
        (r"(?i)\W", long_s, false),
        (r"(?i)[\W]", kelvin, false),
        (r"\W", kelvin, true),
        (r"(?i)\D", kelvin, true),
    ];
    for &(pattern, text, want) in cases {
        assert_eq!(
            matches(pattern, text),
            want,
            "{pattern:?} on {:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let invalid = "invalid flags: use (?flags) or (?flags:re) with flags i, s, U and - to clear";
    let ascii = "(?i) is supported for ASCII letters only";
    let cases = [
        ("(?x)a", invalid, 0),
        ("a(?i", invalid, 1),
        ("(?i:a", "missing closing )", 0),
        ("(?-)", invalid, 0),
        ("(?i-)", invalid, 0),
        ("(?-:a)", invalid, 0),
        ("(?--i)", invalid, 0),
        ("(?i-i-s)", invalid, 0),
        ("(?P>a)", invalid, 0),
        ("(?m)", "multi-line mode (?m) is not supported", 0),
        ("(?i)*", "missing argument to repetition operator", 4),
        ("(?i)é", ascii, 4),
        (r"(?i)\x{212A}", ascii, 4),
        ("(?i)日", ascii, 4),
        (r"(?i)\Qaé\E", ascii, 4),
        ("(?i)[é]", ascii, 5),
        ("(?i)[a-é]", ascii, 5),
        (r"(?i)[^ab\x{80}]", ascii, 8),
        (r"(?i:a)(?i:[\x00-\x{10FFFF}])", ascii, 11),
    ];
    for (pattern, reason, offset) in cases {
        match Pattern::new(pattern) {
            Ok(compiled) => panic!("{pattern:?} accepted: {compiled:?}"),
            Err(e) => assert_eq!((e.reason(), e.offset()), (reason, offset), "{pattern:?}"),
        }
    }
}

#[test]
fn size_limits_hold() {
    // Counted repetition expands, within the instruction budget.
    assert!(matches(r"^\w{1,100}$", &[b'x'; 100]));
    assert!(!matches(r"^\w{1,100}$", &[b'x'; 101]));
    assert!(Pattern::new("(?:a{100}){11}").is_err());
    assert!(Pattern::new("((a{10}){10}){10}").is_err());
    let nested = |depth: usize| format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
    assert!(matches(&nested(100), b"a"));
    assert_eq!(
        Pattern::new(&nested(101)).map(|_| ()).unwrap_err().reason(),
        "groups nested more than 100 deep"
    );
}

#[test]
fn pathological_patterns_run_in_linear_time() {
    let text = vec![b'a'; 10_000];
    for pattern in [
        "(a*)*b",
        "(a|a)*c",
        "(a+)+$b",
        "^(a|aa)+$x",
        "(x+x+)+y",
        "(?:a*){20}b",
        "(a|b|ab)*c",
        r"(\w+\s?)+$!",
    ] {
        assert!(!matches(pattern, &text), "{pattern}");
    }
    assert!(matches("(a*)*$", &text));
}

#[test]
fn a_match_reuses_its_scratch() {
    let pattern = Pattern::new("(gold|silver)+x").unwrap();
    let before = pattern.machine.scratch.borrow().stack.capacity();
    for text in [&b"goldsilverx"[..], b"nope", b"silverx", &[b'g'; 500]] {
        let _ = pattern.is_match(text);
    }
    assert_eq!(pattern.machine.scratch.borrow().stack.capacity(), before);
    assert!(pattern.is_match(b"goldx"));
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// An item of `items` that under `(?i)` (`fold`) stands for ASCII
    /// characters only, as this module refuses to fold others.
    fn pick_folding<'a>(&mut self, items: &[&'a str], fold: bool) -> &'a str {
        loop {
            let item = self.pick(items);
            if !fold || (item.is_ascii() && !item.contains("x{")) {
                return item;
            }
        }
    }
}

// No `\v` anywhere: Go's `\s` leaves it out, regex-lite's includes it.
// No U+212A or U+017F either: under `(?i)` Go (and this module) folds
// them with `k` and `s`, regex-lite does not; `flags_match_as_go_does`
// checks them.
const TEXT_CHARS: &[&str] = &[
    "a", "b", "c", "a", "b", "A", "B", "K", "k", "s", "S", "-", ".", "_", "0", "7", " ", "\n",
    "\t", "é", "日", "]", "*",
];
const LITERALS: &[&str] = &[
    "a",
    "b",
    "c",
    "A",
    "k",
    "S",
    "_",
    "0",
    "7",
    " ",
    r"\-",
    r"\.",
    r"\*",
    r"\]",
    r"\\",
    r"\n",
    r"\t",
    "é",
    "日",
    r"\x61",
    r"\x{65E5}",
];
const CLASS_ITEMS: &[&str] = &[
    "a",
    "b-c",
    "0-9",
    r"\d",
    r"\w",
    r"\s",
    r"\D",
    r"\W",
    "_",
    r"\-",
    "é",
    "a-z",
    "A-K",
    "[:upper:]",
    r"\]",
    r"\n",
    " ",
    "日-日",
    r"\x00-\x{10FFFF}",
];
const QUANTIFIERS: &[&str] = &[
    "*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}", "{0}", "*?", "+?", "??", "{1,2}?",
];

fn atom(rng: &mut Lcg, fold: bool) -> String {
    match rng.below(6) {
        0 | 1 => rng.pick_folding(LITERALS, fold).to_owned(),
        2 => ".".to_owned(),
        3 => rng
            .pick(&[r"\d", r"\w", r"\s", r"\D", r"\W", r"\S"])
            .to_owned(),
        _ => {
            let mut class = String::from("[");
            if rng.below(3) == 0 {
                class.push('^');
            }
            for _ in 0..=rng.below(3) {
                class.push_str(rng.pick_folding(CLASS_ITEMS, fold));
            }
            class.push(']');
            class
        }
    }
}

/// Flags the generator sets: no `m`, which this module refuses.
const FLAGS: &[&str] = &["i", "s", "U", "-i", "is", "i-s", "-s", "s-i", "iU"];

/// Whether `(?i)` is in force after `flags`, given `fold` before.
fn folds_after(flags: &str, fold: bool) -> bool {
    match flags.split_once('-') {
        Some((_, cleared)) if cleared.contains('i') => false,
        _ => fold || flags.contains('i'),
    }
}

/// A pattern; `fold` when `(?i)` is in force where it goes, so that it
/// only folds ASCII.
fn expression(rng: &mut Lcg, depth: usize, fold: bool) -> String {
    if depth == 0 {
        return atom(rng, fold);
    }
    let sub = |rng: &mut Lcg| expression(rng, depth - 1, fold);
    match rng.below(14) {
        0..=2 => atom(rng, fold),
        3 => sub(rng) + &sub(rng),
        4 => sub(rng) + "|" + &sub(rng),
        5 => format!("({})", sub(rng)),
        6 => format!("(?:{}){}", sub(rng), rng.pick(QUANTIFIERS)),
        7 => atom(rng, fold) + rng.pick(QUANTIFIERS),
        8 => format!("^{}", sub(rng)),
        9 => format!("{}$", sub(rng)),
        10 => format!(
            "{}{}{}",
            rng.pick(&[r"\b", r"\B", ""]),
            sub(rng),
            rng.pick(&[r"\b", r"\B", ""])
        ),
        11 => format!("(|{})", sub(rng)),
        12 => {
            let flags = rng.pick(FLAGS);
            let inner = expression(rng, depth - 1, folds_after(flags, fold));
            format!("(?{flags}:{inner})")
        }
        _ => {
            // `(?flags)` inside a group: in force after it, in the
            // later branch too, and no longer after the group.
            let flags = rng.pick(FLAGS);
            let before = sub(rng);
            let after = folds_after(flags, fold);
            let rest = expression(rng, depth - 1, after);
            let branch = expression(rng, depth - 1, after);
            format!("({before}(?{flags}){rest}|{branch}){}", sub(rng))
        }
    }
}

#[test]
fn agrees_with_regex_lite_on_generated_patterns() {
    let mut rng = Lcg(0x9E37_79B9_7F4A_7C15);
    let mut cases = 0;
    let mut matched = 0;
    for _ in 0..4_000 {
        // A whole pattern under `(?i)`, as configs write it.
        let source = match rng.below(8) {
            0 => format!("(?i){}", expression(&mut rng, 4, true)),
            _ => expression(&mut rng, 4, false),
        };
        let reference = regex_lite::Regex::new(&source)
            .unwrap_or_else(|e| panic!("generator wrote {source:?}, refused by regex-lite: {e}"));
        let pattern = Pattern::new(&source).unwrap_or_else(|e| panic!("{source:?} refused: {e}"));
        for _ in 0..40 {
            let mut text = String::new();
            for _ in 0..rng.below(14) {
                text.push_str(rng.pick(TEXT_CHARS));
            }
            let want = reference.is_match(&text);
            assert_eq!(
                pattern.is_match(text.as_bytes()),
                want,
                "{source:?} on {text:?}"
            );
            cases += 1;
            matched += usize::from(want);
        }
    }
    // Both answers are well represented, or the test proves little.
    assert!(
        matched > cases / 5 && matched < cases * 4 / 5,
        "{matched} of {cases} matched"
    );
}
