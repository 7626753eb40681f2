//! The instructions a pattern compiles to and the VM runs.

/// Instructions a program may hold; bounds the work per text byte and the
/// thread lists each pattern keeps.
pub(super) const MAX_INSTRUCTIONS: usize = 1000;

/// A zero-width condition on the position between two characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Assertion {
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
pub(super) enum Inst {
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
