//! The kit's own regular expressions, for `regexp:` keys.
//!
//! Higress's `cluster-key-rate-limit` matches `regexp:<pattern>` keys with
//! Go's `regexp.MatchString`: RE2 syntax, an unanchored search. A
//! [`Pattern`] accepts the part of that syntax limit keys use, compiles it
//! once at configure time into a small program, and answers match or no
//! match by simulating the program's NFA over the text (a Pike VM). The
//! simulation keeps at most one thread per instruction, so a request costs
//! at most `text length × program size` steps whatever the pattern and the
//! text: a hostile header cannot make a match backtrack exponentially.
//! Matching allocates nothing: the thread lists are sized to the program
//! when it is compiled. A general regex crate would bring a far larger
//! engine into every module that matches patterns; this one holds only
//! what the subset needs (README "Module size" has the measurement).
//!
//! # Syntax
//!
//! - Literals. Any character but `\ . + * ? ( ) | [ ] { } ^ $` stands for
//!   itself, non-ASCII ones included. `\` before any ASCII punctuation or
//!   space makes it literal (`\.`, `\\`, `\-`, `\/`); `\t \n \r \f \v \a`,
//!   `\x7F` and `\x{10FFFF}` name characters; `\Q...\E` quotes a run of
//!   literals.
//! - `.`: any character but `\n` (any at all under `s`).
//! - Classes: `[abc]`, `[a-z0-9_]`, `[^...]` (matches `\n` unless listed),
//!   with escapes inside, `]` first or `-` first or last as literals, and
//!   the ASCII POSIX classes `[[:alpha:]]`, `[[:^digit:]]`...
//! - `\d` (`[0-9]`), `\w` (`[0-9A-Za-z_]`), `\s` (`[\t\n\f\r ]`) and their
//!   negations `\D \W \S`; ASCII meanings, as in Go.
//! - Assertions: `^` and `\A` (start of the text), `$` and `\z` (end of the
//!   text, not before a final newline), `\b` and `\B` (ASCII word
//!   boundary, or not).
//! - Groups `(...)`, `(?:...)`, `(?P<name>...)`, `(?<name>...)`;
//!   alternation `|` (branches may be empty).
//! - Flags: `(?flags)` sets them up to the `)` of the enclosing group
//!   (across `|`), `(?flags:re)` for `re` only; `-` clears those after it
//!   (`(?i-s)`, `(?-i)`). `i`: case-insensitive, compiled into the
//!   program (the text is never folded). ASCII letters match both cases,
//!   and as in Go's simple folding `k` and `s` also match U+212A (KELVIN
//!   SIGN) and U+017F (LONG S); classes fold before they are negated, so
//!   `(?i)[^a]` matches neither `a` nor `A`, and `(?i)\w` (which holds
//!   letters) matches U+212A too; assertions do not change. `s`: `.`
//!   matches `\n`. `U` (ungreedy) is accepted and, like the lazy forms,
//!   changes nothing here; so do `-m` (multi-line mode is never on) and,
//!   as in Go, `(?)`.
//! - Repetition `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` with counts up to
//!   1000; the lazy forms (`*?`...) are accepted and mean the same, as only
//!   match or no match matters. As in Go, a `{` that does not start a
//!   valid count is a literal, and repeating a repetition (`a**`) is an
//!   error.
//!
//! The text is read as UTF-8, each invalid byte as U+FFFD, as Go does: `.`
//! and classes consume whole characters, and a pattern's literal matches
//! the same bytes in the text.
//!
//! Refused, with a one-line reason: backreferences and octal escapes
//! (`\1`, `\0`), lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), multi-line
//! mode `(?m)`, invalid flags (`(?x)`, `(?-)`), under `i` any non-ASCII
//! literal or class range reaching beyond ASCII (`(?i)é`, `(?i)[à-ÿ]`:
//! folding them would need Unicode case tables; `(?i)[^a]` is fine),
//! Unicode classes (`\p{Greek}`), and programs of more than 1000
//! instructions once counted repetitions are expanded (`x{1,100}` costs
//! 100 copies of `x` and 99 branches).

use core::cell::RefCell;
use core::fmt;

/// Instructions a program may hold; bounds the work per text byte and the
/// thread lists each pattern keeps (about 8 bytes per instruction).
const MAX_INSTRUCTIONS: usize = 1000;
/// Largest count in `{n,m}`, as in Go.
const MAX_REPEAT: u32 = 1000;
/// Deepest group nesting; parsing and compiling recurse once per level.
const MAX_NESTING: usize = 100;
/// Why a pattern that folds case with a non-ASCII character is refused.
const NOT_ASCII: &str = "(?i) is supported for ASCII letters only";
/// Largest Unicode scalar value, for negated classes.
const MAX_CHAR: u32 = 0x10_FFFF;
/// What an invalid UTF-8 byte of the text reads as.
const REPLACEMENT: u32 = 0xFFFD;

/// Why a pattern was refused, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternError {
    reason: &'static str,
    offset: usize,
}

impl PatternError {
    /// The reason, without the position.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The byte offset in the pattern where the fault was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.reason, self.offset)
    }
}

impl std::error::Error for PatternError {}

/// A zero-width condition on the position between two characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assertion {
    /// `^`, `\A`.
    Start,
    /// `$`, `\z`.
    End,
    /// `\b`.
    WordBoundary,
    /// `\B`.
    NotWordBoundary,
}

/// One instruction of a compiled pattern. Program counters are `u16`:
/// programs hold at most [`MAX_INSTRUCTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inst {
    /// Consume this character.
    Char(u32),
    /// Consume a character in `ranges[start..end]` (sorted, disjoint).
    Class { start: u32, end: u32 },
    /// Continue only where the assertion holds.
    Assert(Assertion),
    /// Continue at both.
    Split(u16, u16),
    /// Continue there.
    Jump(u16),
    /// The pattern matched.
    Match,
}

/// A parsed pattern, before compilation.
#[derive(Debug)]
enum Node {
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
    fn anchored(&self) -> bool {
        match self {
            Node::Assert(Assertion::Start) => true,
            Node::Concat(nodes) => nodes.first().is_some_and(Node::anchored),
            Node::Alternate(nodes) => nodes.iter().all(Node::anchored),
            Node::Repeat { node, min, .. } => *min > 0 && node.anchored(),
            _ => false,
        }
    }
}

/// A compiled regular expression that answers match or no match.
///
/// Compile once with [`Pattern::new`], then ask [`Pattern::is_match`] per
/// request: linear in the text, no allocation. The module documentation
/// lists the syntax.
///
/// The thread lists live in a `RefCell` inside the pattern so matching
/// through `&self` allocates nothing; a pattern is therefore `Send` but
/// not `Sync` (a proxy-wasm VM is single-threaded).
///
/// # Examples
///
/// ```
/// use kit::pattern::Pattern;
///
/// let pattern = Pattern::new(r"^user-\d+$")?;
/// assert!(pattern.is_match(b"user-42"));
/// assert!(!pattern.is_match(b"user-42x"));
/// // Unanchored, as Go's `regexp.MatchString`.
/// assert!(Pattern::new("gold|silver")?.is_match(b"tier=silver"));
/// # Ok::<(), kit::pattern::PatternError>(())
/// ```
pub struct Pattern {
    program: Box<[Inst]>,
    ranges: Box<[(u32, u32)]>,
    anchored: bool,
    scratch: RefCell<Scratch>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("instructions", &self.program.len())
            .field("anchored", &self.anchored)
            .finish_non_exhaustive()
    }
}

impl Pattern {
    /// Compiles `pattern` (syntax in the module documentation).
    ///
    /// # Errors
    /// When the pattern is malformed or uses syntax this module refuses
    /// (backreferences, lookaround, `(?m)`, non-ASCII under `(?i)`, Unicode
    /// classes), or compiles to more than 1000 instructions; the error
    /// gives a one-line reason and the byte offset.
    ///
    /// # Examples
    ///
    /// ```
    /// use kit::pattern::Pattern;
    ///
    /// let refused = Pattern::new("a(?=b)").unwrap_err();
    /// assert_eq!(refused.to_string(), "lookahead (?= is not supported (at byte 1)");
    /// ```
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let mut parser = Parser {
            pattern,
            pos: 0,
            depth: 0,
            flags: Flags::default(),
            ranges: Vec::new(),
        };
        let node = parser.alternation()?;
        if parser.pos < pattern.len() {
            return Err(parser.error("unmatched )"));
        }
        let mut compiler = Compiler {
            program: Vec::new(),
            offset: pattern.len(),
        };
        compiler.compile(&node)?;
        compiler.emit(Inst::Match)?;
        let size = compiler.program.len();
        Ok(Pattern {
            program: compiler.program.into_boxed_slice(),
            ranges: parser.ranges.into_boxed_slice(),
            anchored: node.anchored(),
            scratch: RefCell::new(Scratch::new(size)),
        })
    }

    /// Whether the pattern matches somewhere in `text` (read as UTF-8,
    /// invalid bytes as U+FFFD).
    ///
    /// Takes at most `text.len() × instructions` steps and allocates
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use kit::pattern::Pattern;
    ///
    /// let pattern = Pattern::new("^[a-f0-9]{8}$")?;
    /// assert!(pattern.is_match(b"deadbeef"));
    /// assert!(!pattern.is_match(b"deadbeefs"));
    /// # Ok::<(), kit::pattern::PatternError>(())
    /// ```
    pub fn is_match(&self, text: &[u8]) -> bool {
        match self.scratch.try_borrow_mut() {
            Ok(mut scratch) => self.search(&mut scratch, text),
            // Only reachable if a match re-entered itself, which nothing
            // does; a fresh scratch keeps the answer right anyway.
            Err(_) => self.search(&mut Scratch::new(self.program.len()), text),
        }
    }

    /// The Pike VM: `current` holds the threads alive before the character
    /// at `pos`, each an instruction that consumes a character (plus the
    /// zero-width instructions the closure went through, which `step`
    /// skips). A new thread starts at every position, which makes the
    /// search unanchored.
    fn search(&self, scratch: &mut Scratch, text: &[u8]) -> bool {
        let Scratch {
            current,
            next,
            stack,
        } = scratch;
        current.clear();
        let mut pos = 0;
        loop {
            let here = Position::at(text, pos);
            if (pos == 0 || !self.anchored) && self.add(current, stack, 0, here) {
                return true;
            }
            if current.is_empty() && self.anchored {
                return false;
            }
            let Some((ch, width)) = decode(text, pos) else {
                return false;
            };
            pos += width;
            let after = Position::at(text, pos);
            next.clear();
            for &pc in current.iter() {
                let consumed = match self.program.get(usize::from(pc)) {
                    Some(Inst::Char(want)) => *want == ch,
                    Some(Inst::Class { start, end }) => self.class_contains(*start, *end, ch),
                    _ => false,
                };
                if consumed && self.add(next, stack, pc.saturating_add(1), after) {
                    return true;
                }
            }
            core::mem::swap(current, next);
        }
    }

    /// Adds the thread at `pc` and everything reachable from it without
    /// consuming a character at `here`; true when that reaches `Match`.
    /// Each instruction enters `set` (and `stack`) at most once, so the
    /// stack never outgrows the capacity reserved at compile time.
    fn add(&self, set: &mut ThreadSet, stack: &mut Vec<u16>, pc: u16, here: Position) -> bool {
        stack.clear();
        if set.insert(pc) {
            stack.push(pc);
        }
        while let Some(pc) = stack.pop() {
            let mut follow = |to: u16| {
                if set.insert(to) {
                    stack.push(to);
                }
            };
            match self.program.get(usize::from(pc)) {
                Some(Inst::Match) => return true,
                Some(Inst::Jump(to)) => follow(*to),
                Some(Inst::Split(first, second)) => {
                    follow(*first);
                    follow(*second);
                }
                Some(Inst::Assert(assertion)) if here.satisfies(*assertion) => {
                    follow(pc.saturating_add(1));
                }
                _ => {}
            }
        }
        false
    }

    fn class_contains(&self, start: u32, end: u32, ch: u32) -> bool {
        let ranges = self
            .ranges
            .get(start as usize..end as usize)
            .unwrap_or_default();
        // Ranges are sorted and disjoint: the first whose end is not below
        // `ch` is the only candidate.
        let candidate = ranges.partition_point(|&(_, hi)| hi < ch);
        ranges.get(candidate).is_some_and(|&(lo, _)| lo <= ch)
    }
}

/// Reads the character at `pos` as Go does: a valid UTF-8 sequence, or
/// U+FFFD for one invalid byte. `None` at the end of the text.
fn decode(text: &[u8], pos: usize) -> Option<(u32, usize)> {
    let first = *text.get(pos)?;
    let width = match first {
        0x00..=0x7F => return Some((u32::from(first), 1)),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Some((REPLACEMENT, 1)),
    };
    let decoded = text
        .get(pos..pos.saturating_add(width))
        .and_then(|bytes| core::str::from_utf8(bytes).ok())
        .and_then(|s| s.chars().next());
    Some(decoded.map_or((REPLACEMENT, 1), |ch| (u32::from(ch), width)))
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// What the assertions need to know about a position in the text. Word
/// characters are ASCII, so the bytes either side suffice.
#[derive(Clone, Copy, Debug)]
struct Position {
    at_start: bool,
    at_end: bool,
    word_before: bool,
    word_after: bool,
}

impl Position {
    fn at(text: &[u8], pos: usize) -> Position {
        let before = pos.checked_sub(1).and_then(|i| text.get(i));
        Position {
            at_start: pos == 0,
            at_end: pos >= text.len(),
            word_before: before.is_some_and(|&b| is_word_byte(b)),
            word_after: text.get(pos).is_some_and(|&b| is_word_byte(b)),
        }
    }

    fn satisfies(self, assertion: Assertion) -> bool {
        match assertion {
            Assertion::Start => self.at_start,
            Assertion::End => self.at_end,
            Assertion::WordBoundary => self.word_before != self.word_after,
            Assertion::NotWordBoundary => self.word_before == self.word_after,
        }
    }
}

/// A set of program counters in insertion order, cleared in O(1): the
/// classic sparse/dense pair. Sized to the program once.
#[derive(Debug)]
struct ThreadSet {
    dense: Box<[u16]>,
    sparse: Box<[u16]>,
    len: usize,
}

impl ThreadSet {
    fn new(size: usize) -> ThreadSet {
        ThreadSet {
            dense: vec![0; size].into_boxed_slice(),
            sparse: vec![0; size].into_boxed_slice(),
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> core::slice::Iter<'_, u16> {
        self.dense.get(..self.len).unwrap_or_default().iter()
    }

    /// Adds `pc`; false when it was already there (or is out of range).
    fn insert(&mut self, pc: u16) -> bool {
        let Some(slot) = self.sparse.get_mut(usize::from(pc)) else {
            return false;
        };
        let index = usize::from(*slot);
        if index < self.len && self.dense.get(index) == Some(&pc) {
            return false;
        }
        let (Some(dense), Ok(index)) = (self.dense.get_mut(self.len), u16::try_from(self.len))
        else {
            return false;
        };
        *dense = pc;
        *slot = index;
        self.len += 1;
        true
    }
}

/// The per-match memory of a pattern, allocated when it is compiled.
#[derive(Debug)]
struct Scratch {
    current: ThreadSet,
    next: ThreadSet,
    stack: Vec<u16>,
}

impl Scratch {
    fn new(size: usize) -> Scratch {
        Scratch {
            current: ThreadSet::new(size),
            next: ThreadSet::new(size),
            stack: Vec::with_capacity(size),
        }
    }
}

/// Turns a parsed pattern into instructions, expanding counted repetition.
struct Compiler {
    program: Vec<Inst>,
    /// Where to point errors: the whole pattern is at fault.
    offset: usize,
}

impl Compiler {
    fn too_large(&self) -> PatternError {
        PatternError {
            reason: "pattern is too large: more than 1000 instructions once counted repetitions are expanded",
            offset: self.offset,
        }
    }

    /// The counter of the next instruction.
    fn next_pc(&self) -> Result<u16, PatternError> {
        u16::try_from(self.program.len()).map_err(|_| self.too_large())
    }

    fn emit(&mut self, inst: Inst) -> Result<u16, PatternError> {
        if self.program.len() >= MAX_INSTRUCTIONS {
            return Err(self.too_large());
        }
        let pc = self.next_pc()?;
        self.program.push(inst);
        Ok(pc)
    }

    /// Points the second branch of the `Split` (or the `Jump`) at `pc` to
    /// `to`.
    fn patch(&mut self, pc: u16, to: u16) {
        match self.program.get_mut(usize::from(pc)) {
            Some(Inst::Split(_, second)) => *second = to,
            Some(Inst::Jump(target)) => *target = to,
            _ => {}
        }
    }

    fn compile(&mut self, node: &Node) -> Result<(), PatternError> {
        match node {
            Node::Empty => {}
            Node::Char(ch) => {
                self.emit(Inst::Char(*ch))?;
            }
            Node::Class { start, end } => {
                self.emit(Inst::Class {
                    start: *start,
                    end: *end,
                })?;
            }
            Node::Assert(assertion) => {
                self.emit(Inst::Assert(*assertion))?;
            }
            Node::Concat(nodes) => {
                for node in nodes {
                    self.compile(node)?;
                }
            }
            Node::Alternate(branches) => {
                // split L1, next; L1: first; jump end; next: split ...
                let mut jumps = Vec::new();
                let (last, init) = branches.split_last().unwrap_or((&Node::Empty, &[]));
                for branch in init {
                    let split = self.emit(Inst::Split(0, 0))?;
                    self.patch_first(split)?;
                    self.compile(branch)?;
                    jumps.push(self.emit(Inst::Jump(0))?);
                    let next = self.next_pc()?;
                    self.patch(split, next);
                }
                self.compile(last)?;
                let end = self.next_pc()?;
                for jump in jumps {
                    self.patch(jump, end);
                }
            }
            Node::Repeat { node, min, max } => self.repeat(node, *min, *max)?,
        }
        Ok(())
    }

    /// Points the first branch of the `Split` at `pc` to the instruction
    /// after it.
    fn patch_first(&mut self, pc: u16) -> Result<(), PatternError> {
        let next = self.next_pc()?;
        if let Some(Inst::Split(first, _)) = self.program.get_mut(usize::from(pc)) {
            *first = next;
        }
        Ok(())
    }

    fn repeat(&mut self, node: &Node, min: u32, max: Option<u32>) -> Result<(), PatternError> {
        // A body that compiles to nothing stays nothing however often it is
        // repeated: stop after one copy, so `((){1000}){1000}` costs
        // nothing instead of a million empty passes.
        let before = self.program.len();
        let mandatory = match max {
            // `x{n,}` with n > 0 is n-1 copies of x, then `L: x; split L, end`.
            None => min.saturating_sub(1),
            Some(_) => min,
        };
        for _ in 0..mandatory {
            self.compile(node)?;
            if self.program.len() == before {
                return Ok(());
            }
        }
        match max {
            None if min > 0 => {
                let body = self.next_pc()?;
                self.compile(node)?;
                let split = self.emit(Inst::Split(body, 0))?;
                let end = self.next_pc()?;
                self.patch(split, end);
            }
            None => {
                // `x*`: L: split body, end; body; jump L.
                let split = self.emit(Inst::Split(0, 0))?;
                self.patch_first(split)?;
                self.compile(node)?;
                if self.program.len() == usize::from(split) + 1 {
                    self.program.pop();
                    return Ok(());
                }
                self.emit(Inst::Jump(split))?;
                let end = self.next_pc()?;
                self.patch(split, end);
            }
            Some(max) => {
                // `x{n,m}`: m-n optional copies, each `split copy, end`.
                let mut splits = Vec::new();
                for _ in min..max {
                    let split = self.emit(Inst::Split(0, 0))?;
                    self.patch_first(split)?;
                    self.compile(node)?;
                    if self.program.len() == usize::from(split) + 1 {
                        self.program.pop();
                        break;
                    }
                    splits.push(split);
                }
                let end = self.next_pc()?;
                for split in splits {
                    self.patch(split, end);
                }
            }
        }
        Ok(())
    }
}

/// Recursive descent over the pattern, producing [`Node`]s and the pool of
/// class ranges.
struct Parser<'p> {
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

/// `\d`, `\s`, `\w` and the POSIX classes, as sorted ranges.
const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
const POSIX: &[(&str, &[(u32, u32)])] = &[
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
type NamedClass = (&'static [(u32, u32)], bool);

/// The ranges of `\d \s \w` (and `\D \S \W`, negated).
fn perl_class(letter: char) -> Option<NamedClass> {
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
fn add_folds(class: &mut Vec<(u32, u32)>, lo: u32, hi: u32) {
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
fn add_named(class: &mut Vec<(u32, u32)>, (ranges, negated): NamedClass, fold: bool) {
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
fn add_ranges(class: &mut Vec<(u32, u32)>, ranges: &[(u32, u32)], negated: bool) {
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
fn normalize(class: &mut Vec<(u32, u32)>) {
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

/// Where the two ASCII bytes `pair` first occur in `text`. A plain byte
/// scan: `str::find` with a string needle brings in the whole two-way
/// searcher for two delimiters read once at configure time.
fn find_pair(text: &str, pair: [u8; 2]) -> Option<usize> {
    text.as_bytes().windows(2).position(|window| window == pair)
}

impl Parser<'_> {
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &[u8]) -> bool {
        Pattern::new(pattern)
            .unwrap_or_else(|e| panic!("{pattern:?} refused: {e}"))
            .is_match(text)
    }

    /// Found by fuzzing against regex-lite, which answers false here: Go
    /// folds every letter a class range holds, and `,-d` holds `A`-`Z`.
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

    /// Found by fuzzing against regex-lite, which skips whitespace inside
    /// a counted repetition's braces: Go reads a brace it cannot read as
    /// `{n}`, `{n,}` or `{n,m}` as a literal brace, spaces and all.
    #[test]
    fn braces_with_whitespace_are_literal() {
        assert!(matches("^a{1, 2}$", b"a{1, 2}"));
        assert!(!matches("^a{1, 2}$", b"aa"));
        assert!(matches("-d]{0,\x0c7}", b"(?i)a[5-d]{0,\x0c7}"));
        assert!(matches("^a{ 2}$", b"a{ 2}"));
        assert!(matches("^a{1,2}$", b"aa"));
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
        let invalid =
            "invalid flags: use (?flags) or (?flags:re) with flags i, s, U and - to clear";
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
        let before = pattern.scratch.borrow().stack.capacity();
        for text in [&b"goldsilverx"[..], b"nope", b"silverx", &[b'g'; 500]] {
            let _ = pattern.is_match(text);
        }
        assert_eq!(pattern.scratch.borrow().stack.capacity(), before);
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
            let reference = regex_lite::Regex::new(&source).unwrap_or_else(|e| {
                panic!("generator wrote {source:?}, refused by regex-lite: {e}")
            });
            let pattern =
                Pattern::new(&source).unwrap_or_else(|e| panic!("{source:?} refused: {e}"));
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
}
