//! Recursive descent from a pattern's text to a tree of [`Node`]s and the
//! pool of class ranges its classes point into.

use super::class::{
    add_folds, add_named, add_ranges, is_word_byte, normalize, perl_class, NamedClass, MAX_CHAR,
    POSIX,
};
use super::error::PatternError;
use super::program::Assertion;

/// Largest count in `{n,m}`, as in Go.
const MAX_REPEAT: u32 = 1000;
/// Deepest group nesting; parsing and compiling recurse once per level.
const MAX_NESTING: usize = 100;
/// Why a pattern that folds case with a non-ASCII character is refused.
const NOT_ASCII: &str = "(?i) is supported for ASCII letters only";

/// A parsed pattern, before compilation.
#[derive(Debug)]
pub(super) enum Node {
    Empty,
    Char(u32),
    /// `ranges[start..end]` of the parser's pool.
    Class {
        start: u32,
        end: u32,
    },
    Assert(Assertion),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

impl Node {
    /// Whether every match must begin at the start of the text, so the
    /// search can stop as soon as no thread is alive.
    pub(super) fn anchored(&self) -> bool {
        match self {
            Node::Assert(Assertion::Start) => true,
            Node::Concat(nodes) => nodes.first().is_some_and(Node::anchored),
            Node::Alternate(nodes) => nodes.iter().all(Node::anchored),
            Node::Repeat { node, min, .. } => *min > 0 && node.anchored(),
            _ => false,
        }
    }
}

/// Recursive descent over the pattern, producing [`Node`]s and the pool of
/// class ranges.
pub(super) struct Parser<'p> {
    pattern: &'p str,
    pos: usize,
    depth: usize,
    /// In force at `pos`; saved when a group opens, restored when it
    /// closes.
    flags: Flags,
    ranges: Vec<(u32, u32)>,
}

/// The flags that change what the parser produces. `U` only swaps greedy
/// and lazy repetition, which match the same texts; `m` is refused.
#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    /// `i`: ASCII letters also match their other case.
    fold: bool,
    /// `s`: `.` also matches `\n`.
    dot_nl: bool,
}

/// Where the two ASCII bytes `pair` first occur in `text`. A plain byte
/// scan: `str::find` with a string needle brings in the whole two-way
/// searcher for two delimiters read once at configure time.
fn find_pair(text: &str, pair: [u8; 2]) -> Option<usize> {
    text.as_bytes().windows(2).position(|window| window == pair)
}

impl<'p> Parser<'p> {
    /// A parser at the start of `pattern`, no flag set.
    pub(super) fn new(pattern: &'p str) -> Parser<'p> {
        Parser {
            pattern,
            pos: 0,
            depth: 0,
            flags: Flags::default(),
            ranges: Vec::new(),
        }
    }

    /// Parses the whole pattern into its tree.
    pub(super) fn parse(&mut self) -> Result<Node, PatternError> {
        let node = self.alternation()?;
        if self.pos < self.pattern.len() {
            return Err(self.error("unmatched )"));
        }
        Ok(node)
    }

    /// The pool of class ranges the tree's classes point into.
    pub(super) fn into_ranges(self) -> Vec<(u32, u32)> {
        self.ranges
    }

    fn error(&self, reason: &'static str) -> PatternError {
        self.error_at(reason, self.pos)
    }

    fn error_at(&self, reason: &'static str, offset: usize) -> PatternError {
        PatternError { reason, offset }
    }

    fn rest(&self) -> &str {
        self.pattern.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn eat(&mut self, prefix: &str) -> bool {
        let found = self.rest().starts_with(prefix);
        if found {
            self.pos += prefix.len();
        }
        found
    }

    /// `concat ('|' concat)*`.
    fn alternation(&mut self) -> Result<Node, PatternError> {
        let mut branches = vec![self.concat()?];
        while self.eat("|") {
            branches.push(self.concat()?);
        }
        Ok(match branches.pop() {
            Some(only) if branches.is_empty() => only,
            Some(last) => {
                branches.push(last);
                Node::Alternate(branches)
            }
            None => Node::Empty,
        })
    }

    /// Atoms and their repetitions, up to `|`, `)` or the end.
    fn concat(&mut self) -> Result<Node, PatternError> {
        let mut items = Vec::new();
        let mut repeated = false;
        loop {
            let start = self.pos;
            let (min, max) = match self.peek() {
                None | Some('|' | ')') => break,
                Some('*') => self.operator((0, None)),
                Some('+') => self.operator((1, None)),
                Some('?') => self.operator((0, Some(1))),
                Some('{') => match self.counted()? {
                    Some(counts) => counts,
                    None => {
                        self.pos += 1;
                        items.push(Node::Char(u32::from('{')));
                        repeated = false;
                        continue;
                    }
                },
                Some(_) => {
                    self.atom(&mut items)?;
                    repeated = false;
                    continue;
                }
            };
            if repeated {
                return Err(self.error_at("nested repetition operator is not allowed", start));
            }
            let Some(node) = items.pop() else {
                return Err(self.error_at("missing argument to repetition operator", start));
            };
            // Lazy repetition matches the same texts.
            self.eat("?");
            items.push(Node::Repeat {
                node: Box::new(node),
                min,
                max,
            });
            repeated = true;
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    /// Consumes a one-character repetition operator, returning its counts.
    fn operator(&mut self, counts: (u32, Option<u32>)) -> (u32, Option<u32>) {
        self.pos += 1;
        counts
    }

    /// `{n}`, `{n,}` or `{n,m}` at the current position: consumes it and
    /// returns the counts, or `None` (consuming nothing) when the `{` is a
    /// literal, as in Go.
    fn counted(&mut self) -> Result<Option<(u32, Option<u32>)>, PatternError> {
        let start = self.pos;
        let rest = self.rest();
        let Some(end) = rest.find('}') else {
            return Ok(None);
        };
        let inside = rest.get(1..end).unwrap_or_default();
        let (low, high) = match inside.split_once(',') {
            Some((low, high)) => (low, Some(high)),
            None => (inside, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(low) || high.is_some_and(|h| !h.is_empty() && !digits(h)) {
            return Ok(None);
        }
        let count = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|&n| n <= MAX_REPEAT)
                .ok_or_else(|| self.error_at("repetition count above 1000", start))
        };
        let min = count(low)?;
        let max = match high {
            None => Some(min),
            Some("") => None,
            Some(high) => Some(count(high)?),
        };
        if max.is_some_and(|max| max < min) {
            return Err(self.error_at("invalid repetition: {n,m} with m < n", start));
        }
        self.pos += end + 1;
        Ok(Some((min, max)))
    }

    /// One atom (several literals for `\Q...\E`), pushed onto `items`.
    fn atom(&mut self, items: &mut Vec<Node>) -> Result<(), PatternError> {
        let start = self.pos;
        let Some(ch) = self.bump() else {
            return Ok(());
        };
        let node = match ch {
            '(' => match self.group(start)? {
                Some(node) => node,
                // `(?flags)`: nothing to match, and a repetition after it
                // applies to the item before, as in Go.
                None => return Ok(()),
            },
            '[' => self.class(start)?,
            '.' => {
                let newline: &[_] = if self.flags.dot_nl {
                    &[]
                } else {
                    &[(0x0A, 0x0A)]
                };
                let mut dot = Vec::new();
                add_ranges(&mut dot, newline, true);
                self.pool(dot)?
            }
            '^' => Node::Assert(Assertion::Start),
            '$' => Node::Assert(Assertion::End),
            '\\' => match self.bump() {
                None => return Err(self.error_at("trailing backslash", start)),
                Some('b') => Node::Assert(Assertion::WordBoundary),
                Some('B') => Node::Assert(Assertion::NotWordBoundary),
                Some('A') => Node::Assert(Assertion::Start),
                Some('z') => Node::Assert(Assertion::End),
                Some('Q') => {
                    // A copy of the `&str`, so `self` stays free to mutate.
                    let pattern = self.pattern;
                    let rest = pattern.get(self.pos..).unwrap_or_default();
                    let (quoted, skip) = match find_pair(rest, *b"\\E") {
                        Some(end) => (rest.get(..end).unwrap_or_default(), end + 2),
                        None => (rest, rest.len()),
                    };
                    for c in quoted.chars() {
                        items.push(self.literal(u32::from(c), start)?);
                    }
                    self.pos += skip;
                    return Ok(());
                }
                Some(letter) => match perl_class(letter) {
                    Some(named) => {
                        let mut class = Vec::new();
                        add_named(&mut class, named, self.flags.fold);
                        self.pool(class)?
                    }
                    None => {
                        let ch = self.escape(letter, start)?;
                        self.literal(ch, start)?
                    }
                },
            },
            other => self.literal(u32::from(other), start)?,
        };
        items.push(node);
        Ok(())
    }

    /// A literal character at `at`; under `i`, a class of its cases.
    fn literal(&mut self, ch: u32, at: usize) -> Result<Node, PatternError> {
        if !self.flags.fold {
            return Ok(Node::Char(ch));
        }
        if ch > 0x7F {
            // Folding it would take Unicode case tables.
            return Err(self.error_at(NOT_ASCII, at));
        }
        let mut class = vec![(ch, ch)];
        add_folds(&mut class, ch, ch);
        if class.len() == 1 {
            // Not a letter: it is its only case.
            return Ok(Node::Char(ch));
        }
        normalize(&mut class);
        self.pool(class)
    }

    /// A one-character escape (after the `\`), outside or inside a class.
    fn escape(&mut self, letter: char, start: usize) -> Result<u32, PatternError> {
        Ok(match letter {
            'a' => 0x07,
            'f' => 0x0C,
            't' => 0x09,
            'n' => 0x0A,
            'r' => 0x0D,
            'v' => 0x0B,
            'x' => self.hex(start)?,
            '1'..='9' => return Err(self.error_at("backreferences are not supported", start)),
            '0' => return Err(self.error_at("octal escapes are not supported", start)),
            'p' | 'P' => {
                return Err(self.error_at("Unicode classes \\p{...} are not supported", start))
            }
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => u32::from(c),
            _ => return Err(self.error_at("invalid escape", start)),
        })
    }

    /// `\xFF` or `\x{10FFFF}`, after the `x`.
    fn hex(&mut self, start: usize) -> Result<u32, PatternError> {
        let invalid = self.error_at("invalid \\x escape: use \\xFF or \\x{10FFFF}", start);
        let rest = self.rest();
        let (digits, consumed) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or(invalid)?;
            (braced.get(..end).unwrap_or_default(), end + 2)
        } else {
            (rest.get(..2).ok_or(invalid)?, 2)
        };
        if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid);
        }
        let value = u32::from_str_radix(digits, 16)
            .ok()
            .filter(|&v| v <= MAX_CHAR)
            .ok_or(invalid)?;
        self.pos += consumed;
        Ok(value)
    }

    /// After `(`: the group's kind, its alternation, and the `)`; `None`
    /// for `(?flags)`, which only sets flags.
    fn group(&mut self, start: usize) -> Result<Option<Node>, PatternError> {
        if self.depth >= MAX_NESTING {
            return Err(self.error_at("groups nested more than 100 deep", start));
        }
        let saved = self.flags;
        if self.rest().starts_with('?') {
            let refusals = [
                ("?=", "lookahead (?= is not supported"),
                ("?!", "lookahead (?! is not supported"),
                ("?<=", "lookbehind (?<= is not supported"),
                ("?<!", "lookbehind (?<! is not supported"),
                ("?P=", "backreferences are not supported"),
            ];
            for (prefix, reason) in refusals {
                if self.rest().starts_with(prefix) {
                    return Err(self.error_at(reason, start));
                }
            }
            if self.eat("?P<") || self.eat("?<") {
                // Named groups capture in Go; only matching matters here.
                let rest = self.rest();
                let end = rest.find('>').unwrap_or(0);
                let name = rest.get(..end).unwrap_or_default();
                if name.is_empty() || !name.bytes().all(is_word_byte) {
                    return Err(self.error_at("invalid group name", start));
                }
                self.pos += end + 1;
            } else {
                self.pos += 1;
                if !self.set_flags(start)? {
                    // `(?flags)`: in force up to the enclosing group's `)`.
                    return Ok(None);
                }
            }
        }
        self.depth += 1;
        let node = self.alternation()?;
        self.depth -= 1;
        if !self.eat(")") {
            return Err(self.error_at("missing closing )", start));
        }
        self.flags = saved;
        Ok(Some(node))
    }

    /// After `(?`: the flags up to `)` or `:` (`(?:` has none), as Go reads
    /// them; true when a group follows (`:`).
    fn set_flags(&mut self, start: usize) -> Result<bool, PatternError> {
        let mut clear = false;
        // As in Go, `-` must be followed by at least one flag.
        let mut flag_after_minus = false;
        loop {
            let set = !clear;
            match self.bump() {
                Some('i') => self.flags.fold = set,
                Some('s') => self.flags.dot_nl = set,
                // Ungreedy: only match or no match matters.
                Some('U') => {}
                // Multi-line mode is never on, so clearing it changes nothing.
                Some('m') if set => {
                    return Err(self.error_at("multi-line mode (?m) is not supported", start))
                }
                Some('m') => {}
                Some('-') if set => {
                    clear = true;
                    continue;
                }
                Some(end @ (':' | ')')) if set || flag_after_minus => return Ok(end == ':'),
                _ => return Err(self.error_at(
                    "invalid flags: use (?flags) or (?flags:re) with flags i, s, U and - to clear",
                    start,
                )),
            }
            flag_after_minus = clear;
        }
    }

    /// After `[`: the class up to its `]`.
    fn class(&mut self, start: usize) -> Result<Node, PatternError> {
        let negated = self.eat("^");
        let mut class = Vec::new();
        let mut first = true;
        loop {
            let item = self.pos;
            match self.peek() {
                None => return Err(self.error_at("missing closing ]", start)),
                Some(']') if !first => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            first = false;
            if let Some(named) = self.posix_class(item)? {
                add_named(&mut class, named, self.flags.fold);
                continue;
            }
            let mut chars = self.rest().chars();
            if let (Some('\\'), Some(letter)) = (chars.next(), chars.next()) {
                if let Some(named) = perl_class(letter) {
                    self.pos += 2;
                    add_named(&mut class, named, self.flags.fold);
                    continue;
                }
            }
            let lo = self.class_char(start)?;
            let mut hi = lo;
            let rest = self.rest();
            if rest.starts_with('-') && !rest.starts_with("-]") && rest.len() >= 2 {
                self.pos += 1;
                hi = self.class_char(start)?;
                if hi < lo {
                    return Err(self.error_at("invalid class range: end before start", item));
                }
            }
            if self.flags.fold {
                if hi > 0x7F {
                    // Folding it would take Unicode case tables.
                    return Err(self.error_at(NOT_ASCII, item));
                }
                add_folds(&mut class, lo, hi);
            }
            class.push((lo, hi));
        }
        normalize(&mut class);
        if negated {
            let positive = core::mem::take(&mut class);
            add_ranges(&mut class, &positive, true);
        }
        self.pool(class)
    }

    /// `[:name:]` or `[:^name:]` inside a class; `None` when the text is
    /// not one (it is then literal, as in Go).
    fn posix_class(&mut self, item: usize) -> Result<Option<NamedClass>, PatternError> {
        let Some(after) = self.rest().strip_prefix("[:") else {
            return Ok(None);
        };
        let Some(end) = find_pair(after, *b":]") else {
            return Ok(None);
        };
        let name = after.get(..end).unwrap_or_default();
        let (name, negated) = match name.strip_prefix('^') {
            Some(name) => (name, true),
            None => (name, false),
        };
        let ranges = POSIX
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, ranges)| *ranges)
            .ok_or_else(|| self.error_at("unknown POSIX class", item))?;
        self.pos += end + 4;
        Ok(Some((ranges, negated)))
    }

    /// One character of a class, escapes included.
    fn class_char(&mut self, start: usize) -> Result<u32, PatternError> {
        let escape_at = self.pos;
        match self.bump() {
            None => Err(self.error_at("missing closing ]", start)),
            Some('\\') => match self.bump() {
                None => Err(self.error_at("trailing backslash", escape_at)),
                Some(letter) => self.escape(letter, escape_at),
            },
            Some(ch) => Ok(u32::from(ch)),
        }
    }

    /// Stores a normalized class in the pool.
    fn pool(&mut self, class: Vec<(u32, u32)>) -> Result<Node, PatternError> {
        let too_many = self.error("pattern is too large: too many class ranges");
        let start = u32::try_from(self.ranges.len()).map_err(|_| too_many)?;
        self.ranges.extend(class);
        let end = u32::try_from(self.ranges.len()).map_err(|_| too_many)?;
        Ok(Node::Class { start, end })
    }
}
