//! The kit's own regular expressions, for `regexp:` keys.
//!
//! Higress's rate-limit plugins match `regexp:<pattern>` keys with Go's
//! `regexp.MatchString`: RE2 syntax, an unanchored search. A
//! [`Pattern`] accepts the part of that syntax limit keys use, compiles it
//! once at configure time into a small program, and answers match or no
//! match by simulating the program's NFA over the text (a Pike VM). The
//! simulation keeps at most one thread per instruction, so a request costs
//! at most `text length × program size` steps whatever the pattern and the
//! text: a hostile header cannot make a match backtrack exponentially.
//! Matching allocates nothing: the thread lists are sized to the program
//! when it is compiled. A general regex crate would bring a far larger
//! engine into every module that matches patterns; this one holds only
//! what the subset needs.
//!
//! One file a step, each importing only from those listed before it:
//! `error` (why a pattern is refused), `class` (character classes as
//! sorted ranges), `program` (the instructions), `parse` (the text to a
//! tree), `compile` (the tree to a program) and `run` (the program over a
//! text).
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

mod class;
mod compile;
mod error;
mod parse;
mod program;
mod run;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
mod tests;

use core::fmt;
pub use error::PatternError;
use parse::Parser;
use run::Machine;

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
    machine: Machine,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("instructions", &self.machine.program.len())
            .field("anchored", &self.machine.anchored)
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
        let mut parser = Parser::new(pattern);
        let node = parser.parse()?;
        let program = compile::compile(&node, pattern.len())?;
        Ok(Pattern {
            machine: Machine::new(
                program.into_boxed_slice(),
                parser.into_ranges().into_boxed_slice(),
                node.anchored(),
            ),
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
        self.machine.is_match(text)
    }
}
