//! Character classes as sorted, disjoint ranges of Unicode scalar values:
//! the named classes (`\d`, `[:alpha:]`...), case folding, negation and
//! merging.

/// Largest Unicode scalar value, for negated classes.
pub(super) const MAX_CHAR: u32 = 0x10_FFFF;

/// `\d`, `\s`, `\w` and the POSIX classes, as sorted ranges.
const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
pub(super) const POSIX: &[(&str, &[(u32, u32)])] = &[
    ("alnum", &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)]),
    ("alpha", &[(0x41, 0x5A), (0x61, 0x7A)]),
    ("ascii", &[(0x00, 0x7F)]),
    ("blank", &[(0x09, 0x09), (0x20, 0x20)]),
    ("cntrl", &[(0x00, 0x1F), (0x7F, 0x7F)]),
    ("digit", DIGIT),
    ("graph", &[(0x21, 0x7E)]),
    ("lower", &[(0x61, 0x7A)]),
    ("print", &[(0x20, 0x7E)]),
    (
        "punct",
        &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    ),
    ("space", &[(0x09, 0x0D), (0x20, 0x20)]),
    ("upper", &[(0x41, 0x5A)]),
    ("word", WORD),
    ("xdigit", &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)]),
];

/// A predefined class (`\d`, `[:alpha:]`...): its ranges, and whether it
/// is used negated.
pub(super) type NamedClass = (&'static [(u32, u32)], bool);

/// The ranges of `\d \s \w` (and `\D \S \W`, negated).
pub(super) fn perl_class(letter: char) -> Option<NamedClass> {
    let ranges = match letter.to_ascii_lowercase() {
        'd' => DIGIT,
        's' => SPACE,
        'w' => WORD,
        _ => return None,
    };
    Some((ranges, letter.is_ascii_uppercase()))
}

/// Adds to `class` the other cases of the ASCII letters in `lo..=hi`, as
/// Go's simple case folding does: `k` and `s` also fold to U+212A (KELVIN
/// SIGN) and U+017F (LATIN SMALL LETTER LONG S). The caller keeps `hi`
/// within ASCII, where these are all the folds there are.
pub(super) fn add_folds(class: &mut Vec<(u32, u32)>, lo: u32, hi: u32) {
    const UPPER: (u32, u32) = (0x41, 0x5A);
    const LOWER: (u32, u32) = (0x61, 0x7A);
    // Each letter range maps onto the other, 0x20 apart.
    for ((first, last), to) in [(UPPER, LOWER.0), (LOWER, UPPER.0)] {
        let (from, until) = (lo.max(first), hi.min(last));
        if from <= until {
            class.push((from - first + to, until - first + to));
        }
    }
    for (upper, extra) in [(0x4B, 0x212A), (0x53, 0x17F)] {
        if (lo..=hi).contains(&upper) || (lo..=hi).contains(&(upper + 0x20)) {
            class.push((extra, extra));
        }
    }
}

/// Adds a predefined class to `class`; under `i` its letters are folded
/// before it is negated, as in Go (`(?i)\W` matches neither `k` nor
/// U+212A).
pub(super) fn add_named(class: &mut Vec<(u32, u32)>, (ranges, negated): NamedClass, fold: bool) {
    if !fold {
        add_ranges(class, ranges, negated);
        return;
    }
    let mut folded = ranges.to_vec();
    for &(lo, hi) in ranges {
        add_folds(&mut folded, lo, hi);
    }
    normalize(&mut folded);
    add_ranges(class, &folded, negated);
}

/// Adds `ranges` to `class`, or their complement when `negated`.
pub(super) fn add_ranges(class: &mut Vec<(u32, u32)>, ranges: &[(u32, u32)], negated: bool) {
    if !negated {
        class.extend_from_slice(ranges);
        return;
    }
    let mut next = 0;
    for &(lo, hi) in ranges {
        if lo > next {
            class.push((next, lo - 1));
        }
        next = hi.saturating_add(1);
    }
    if next <= MAX_CHAR {
        class.push((next, MAX_CHAR));
    }
}

/// Sorts and merges `class` in place, so ranges are disjoint and ordered.
pub(super) fn normalize(class: &mut Vec<(u32, u32)>) {
    // Insertion at a binary-searched place rather than `sort_unstable`:
    // classes hold a handful of ranges, sorted once at configure time, and
    // the standard sort would add its generic code to every module.
    let mut sorted: Vec<(u32, u32)> = Vec::with_capacity(class.len());
    for &range in class.iter() {
        let at = sorted.partition_point(|&other| other < range);
        sorted.insert(at, range);
    }
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(sorted.len());
    for &(lo, hi) in &sorted {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    *class = merged;
}

/// Whether `byte` is an ASCII word character (`\w`).
pub(super) fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}
