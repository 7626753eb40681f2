//! Why a pattern was refused, and where.

use core::fmt;

/// Why a pattern was refused, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternError {
    pub(super) reason: &'static str,
    pub(super) offset: usize,
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
