//! Where regex-lite's case folding of a class differs from Go's (and the
//! kit's), exactly: the ASCII characters a `(?i)` bracketed class holds in
//! one and not the other.
//!
//! Two differences, both in how a class is folded:
//! - regex-lite merges a class's ranges, then folds each merged range
//!   once: a range reaching into `a`-`z` gets the uppercase of that part,
//!   and only a range that does not reach into `a`-`z` gets the lowercase
//!   of its `A`-`Z` part. A merged range holding letters of both cases
//!   (`[,-d]` holds `A`-`Z` and `a`-`d`) misses the lowercase of its
//!   uppercase letters (`e`-`z` there). Go folds every letter.
//! - Go folds a negated item (`[:^lower:]`, `\W`) before negating it, so
//!   `(?i)[[:^lower:]]` holds no letter; regex-lite negates it first and
//!   folds the class after, so it holds `A`-`Z` and then `a`-`z`.
//!
//! The class is read with regex-syntax's parser, which reads the syntax
//! regex-lite accepts the same way. Outside ASCII the two fold alike but
//! for KELVIN SIGN and LONG S (Go's third cases of `k` and `s`), which the
//! fuzz target leaves out on its own.

use regex_syntax::ast::{
    self, Ast, ClassAsciiKind, ClassPerlKind, ClassSet, ClassSetItem, FlagsItemKind,
};

/// ASCII characters as a bit set (bit `c` for character `c`).
type Ascii = u128;

const UPPER: Ascii = ((1 << 26) - 1) << 0x41;
const LOWER: Ascii = ((1 << 26) - 1) << 0x61;

/// The ASCII characters the folded classes of `pattern` hold in Go and
/// not in regex-lite or the other way round, as a bit set; `None` if the
/// pattern cannot be read this way (a syntax regex-syntax refuses, a class
/// set operation, a nested or Unicode class).
pub fn ascii_regex_lite_folds_otherwise(pattern: &str) -> Option<Ascii> {
    let ast = ast::parse::Parser::new().parse(pattern).ok()?;
    let mut differ = 0;
    let mut fold = false;
    walk(&ast, &mut fold, &mut differ)?;
    Some(differ)
}

/// Whether `text` holds a character of `set`.
pub fn holds_any(text: &str, set: Ascii) -> bool {
    text.bytes().any(|b| b < 0x80 && set & (1 << b) != 0)
}

/// Walks `ast` with the case-insensitive flag `fold` as the parser keeps
/// it: a flag set applies to the rest of its group, alternatives
/// included; a group's own flags end with it.
fn walk(ast: &Ast, fold: &mut bool, differ: &mut Ascii) -> Option<()> {
    match ast {
        Ast::Flags(set) => apply(&set.flags, fold),
        Ast::ClassBracketed(class) if *fold => {
            let mut items = Vec::new();
            set_items(&class.kind, &mut items)?;
            *differ |= go_class(&items) ^ lite_class(&items);
        }
        Ast::Repetition(rep) => walk(&rep.ast, fold, differ)?,
        Ast::Group(group) => {
            let mut inner = *fold;
            if let ast::GroupKind::NonCapturing(flags) = &group.kind {
                apply(flags, &mut inner);
            }
            walk(&group.ast, &mut inner, differ)?;
        }
        Ast::Alternation(alt) => {
            for ast in &alt.asts {
                walk(ast, fold, differ)?;
            }
        }
        Ast::Concat(concat) => {
            for ast in &concat.asts {
                walk(ast, fold, differ)?;
            }
        }
        _ => {}
    }
    Some(())
}

fn apply(flags: &ast::Flags, fold: &mut bool) {
    let mut negated = false;
    for item in &flags.items {
        match item.kind {
            FlagsItemKind::Negation => negated = true,
            FlagsItemKind::Flag(ast::Flag::CaseInsensitive) => *fold = !negated,
            FlagsItemKind::Flag(_) => {}
        }
    }
}

/// One item of a class: its ASCII characters, and whether it is negated.
type Item = (Ascii, bool);

fn set_items(set: &ClassSet, out: &mut Vec<Item>) -> Option<()> {
    match set {
        ClassSet::Item(item) => items(item, out),
        ClassSet::BinaryOp(_) => None,
    }
}

fn items(item: &ClassSetItem, out: &mut Vec<Item>) -> Option<()> {
    match item {
        ClassSetItem::Empty(_) => {}
        ClassSetItem::Literal(l) => out.push((range(l.c.into(), l.c.into()), false)),
        ClassSetItem::Range(r) => out.push((range(r.start.c.into(), r.end.c.into()), false)),
        ClassSetItem::Ascii(a) => out.push((ranges(ascii_ranges(&a.kind)), a.negated)),
        ClassSetItem::Perl(p) => {
            let set: &[(u32, u32)] = match p.kind {
                ClassPerlKind::Digit => &[(0x30, 0x39)],
                // regex-lite's `\s` holds `\v` (Go's does not; the target
                // leaves texts with `\v` out there).
                ClassPerlKind::Space => &[(0x09, 0x0d), (0x20, 0x20)],
                ClassPerlKind::Word => &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)],
            };
            out.push((ranges(set), p.negated));
        }
        ClassSetItem::Union(u) => {
            for item in &u.items {
                items(item, out)?;
            }
        }
        ClassSetItem::Unicode(_) | ClassSetItem::Bracketed(_) => return None,
    }
    Some(())
}

/// The ASCII part of `lo..=hi`.
fn range(lo: u32, hi: u32) -> Ascii {
    (lo..=hi.min(0x7f)).fold(0, |set, c| set | 1 << c)
}

fn ranges(list: &[(u32, u32)]) -> Ascii {
    list.iter().fold(0, |set, &(lo, hi)| set | range(lo, hi))
}

fn ascii_ranges(kind: &ClassAsciiKind) -> &'static [(u32, u32)] {
    match kind {
        ClassAsciiKind::Alnum => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
        ClassAsciiKind::Alpha => &[(0x41, 0x5a), (0x61, 0x7a)],
        ClassAsciiKind::Ascii => &[(0x00, 0x7f)],
        ClassAsciiKind::Blank => &[(0x09, 0x09), (0x20, 0x20)],
        ClassAsciiKind::Cntrl => &[(0x00, 0x1f), (0x7f, 0x7f)],
        ClassAsciiKind::Digit => &[(0x30, 0x39)],
        ClassAsciiKind::Graph => &[(0x21, 0x7e)],
        ClassAsciiKind::Lower => &[(0x61, 0x7a)],
        ClassAsciiKind::Print => &[(0x20, 0x7e)],
        ClassAsciiKind::Punct => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
        ClassAsciiKind::Space => &[(0x09, 0x0d), (0x20, 0x20)],
        ClassAsciiKind::Upper => &[(0x41, 0x5a)],
        ClassAsciiKind::Word => &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)],
        ClassAsciiKind::Xdigit => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
    }
}

/// Every letter of `set` in both cases.
fn fold_all(set: Ascii) -> Ascii {
    set | (set & UPPER) << 32 | (set & LOWER) >> 32
}

/// Go: each item folded, then negated if it is.
fn go_class(items: &[Item]) -> Ascii {
    items.iter().fold(0, |class, &(set, negated)| {
        let folded = fold_all(set);
        class | if negated { !folded } else { folded }
    })
}

/// regex-lite: the items (negated ones negated) merged into ranges, then
/// each maximal run folded once, its lowercase part first.
fn lite_class(items: &[Item]) -> Ascii {
    let class = items.iter().fold(0, |class, &(set, negated)| {
        class | if negated { !set } else { set }
    });
    let mut folded = class;
    let mut c = 0;
    while c < 0x80 {
        if class & 1 << c == 0 {
            c += 1;
            continue;
        }
        let start = c;
        while c < 0x80 && class & 1 << c != 0 {
            c += 1;
        }
        let run = range(start, c - 1);
        folded |= if run & LOWER != 0 {
            (run & LOWER) >> 32
        } else {
            (run & UPPER) << 32
        };
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(set: Ascii) -> String {
        (0..0x80u8)
            .filter(|&c| set & (1 << c) != 0)
            .map(char::from)
            .collect()
    }

    fn missed(pattern: &str) -> Option<String> {
        ascii_regex_lite_folds_otherwise(pattern).map(chars)
    }

    #[test]
    fn a_range_over_both_cases_misses_the_lowercase_of_its_uppercase() {
        assert_eq!(
            missed("(?i)[,-d]").as_deref(),
            Some("efghijklmnopqrstuvwxyz")
        );
        assert_eq!(
            missed("(?i)a[-,-d*]").as_deref(),
            Some("efghijklmnopqrstuvwxyz")
        );
        assert_eq!(missed("(?i)[X-b]").as_deref(), Some("xyz"));
        // Negated: the same letters, the other way round.
        assert_eq!(missed("(?i)[^X-b]").as_deref(), Some("xyz"));
        // Merged from two ranges that alone reach one case each.
        assert_eq!(
            missed("(?i)[,-Z\\[-c]").as_deref(),
            Some("defghijklmnopqrstuvwxyz")
        );
    }

    #[test]
    fn nothing_is_missed_where_regex_lite_folds_right() {
        for pattern in [
            "[,-d]",          // not folded
            "(?i)[a-z]",      // one case per range
            "(?i)[A-Za-z]",   // two ranges, not adjacent
            "(?i)[A-z]",      // both cases whole
            "(?i)[A-Z\\[-z]", // merged into A-z
            "(?i)[\\w]",
            "(?i)[[:alpha:]]",
            "(?i)[[:^alpha:]]",
            "(?i:[a-c])[,-d]", // the flag ends with its group
            "(?i)(?-i)[,-d]",
        ] {
            assert_eq!(missed(pattern).as_deref(), Some(""), "{pattern}");
        }
        assert_eq!(missed("(?i)[,-da-z]").as_deref(), Some(""));
        assert_eq!(
            missed("(?i)[,-dm]").as_deref(),
            Some("efghijklnopqrstuvwxyz")
        );
    }

    #[test]
    fn a_negated_item_is_folded_before_it_is_negated_in_go() {
        // Go: no letter; regex-lite: every letter.
        assert_eq!(
            missed("(?i)[[:^lower:]]").as_deref(),
            Some("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        );
        assert_eq!(
            missed("(?i)[[:^upper:]]").as_deref(),
            missed("(?i)[[:^lower:]]").as_deref()
        );
        // \W holds no letter either way.
        assert_eq!(missed("(?i)[\\W]").as_deref(), Some(""));
    }

    #[test]
    fn unreadable_patterns_answer_none() {
        assert_eq!(missed("(?i)[a&&b]"), None);
        assert_eq!(missed("(?i)[[a]]"), None);
        assert_eq!(missed("(?i)[\\pL]"), None);
        assert_eq!(missed("(?i)["), None);
    }

    /// Against the implementations themselves: on every one-character
    /// ASCII text, regex-lite and the kit (Go's semantics) disagree on
    /// exactly the letters this module says regex-lite misses.
    #[test]
    fn the_missed_letters_are_where_regex_lite_and_the_kit_disagree() {
        let classes = [
            ",-d",
            "X-b",
            "^X-b",
            ",-Z\\[-c",
            ",-dm",
            "A-Z",
            "a-z",
            "A-z",
            "0-9A-Fa-f",
            "\\w",
            "[:alpha:]",
            "[:punct:]",
            "[:punct:]A-Z",
            "[:^lower:]",
            "\\Wq",
            "Y-c",
            "!-~",
            "\\x00-\\x7f",
            "^\\x00-b",
        ];
        for class in classes {
            for pattern in [format!("^(?i)[{class}]$"), format!("(?i:^[{class}]$)")] {
                let differ = ascii_regex_lite_folds_otherwise(&pattern).unwrap();
                let kit = kit::limits::pattern::Pattern::new(&pattern)
                    .unwrap_or_else(|e| panic!("kit: {pattern}: {e:?}"));
                let lite = regex_lite::Regex::new(&pattern)
                    .unwrap_or_else(|e| panic!("regex-lite: {pattern}: {e}"));
                for byte in 0u8..0x80 {
                    let text = char::from(byte).to_string();
                    let differs = kit.is_match(text.as_bytes()) != lite.is_match(&text);
                    assert_eq!(differs, holds_any(&text, differ), "{pattern} on {text:?}");
                }
            }
        }
    }

    #[test]
    fn texts_are_checked_for_missed_letters() {
        let m = ascii_regex_lite_folds_otherwise("(?i)[X-b]").unwrap();
        assert!(holds_any("aaay", m));
        assert!(!holds_any("aaaY", m));
        assert!(!holds_any("", m));
    }
}
