//! The Pike VM: runs a compiled program over a text, every thread in
//! step, in memory sized once when the pattern is compiled.

use super::class::is_word_byte;
use super::program::{Assertion, Inst};
use core::cell::RefCell;

/// What an invalid UTF-8 byte of the text reads as.
const REPLACEMENT: u32 = 0xFFFD;

/// A compiled program and the memory to run it in: all a pattern holds.
///
/// The thread lists live in a `RefCell` so matching through `&self`
/// allocates nothing.
pub(super) struct Machine {
    /// The instructions, ending in `Match`.
    pub(super) program: Box<[Inst]>,
    /// The pool the `Class` instructions point into.
    ranges: Box<[(u32, u32)]>,
    /// Whether every match must begin at the start of the text, so the
    /// search can stop as soon as no thread is alive.
    pub(super) anchored: bool,
    pub(super) scratch: RefCell<Scratch>,
}

impl Machine {
    /// Holds `program`, whose classes point into `ranges`, with thread
    /// lists sized to it.
    pub(super) fn new(program: Box<[Inst]>, ranges: Box<[(u32, u32)]>, anchored: bool) -> Machine {
        let size = program.len();
        Machine {
            program,
            ranges,
            anchored,
            scratch: RefCell::new(Scratch::new(size)),
        }
    }

    /// Whether the program matches somewhere in `text`.
    pub(super) fn is_match(&self, text: &[u8]) -> bool {
        match self.scratch.try_borrow_mut() {
            Ok(mut scratch) => self.search(&mut scratch, text),
            // Only reachable if a match re-entered itself, which nothing
            // does; a fresh scratch keeps the answer right anyway.
            Err(_) => self.search(&mut Scratch::new(self.program.len()), text),
        }
    }

    /// The Pike VM: `current` holds the threads alive before the character
    /// at `pos`, each an instruction that consumes a character (plus the
    /// zero-width instructions the closure went through, which the loop
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
pub(super) struct Scratch {
    current: ThreadSet,
    next: ThreadSet,
    pub(super) stack: Vec<u16>,
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
