//! Where the skim is in a document: the object it reads and the state of
//! its byte-by-byte path.

use super::record::Slot;
use crate::json::Num;

/// An object the skim reads key by key (every other object is skipped
/// whole). At most three deep: the document, `message` or `response`, and
/// a usage object. The document itself holds Ollama's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// The top-level object.
    Top,
    /// `message` or `response` in the top-level object.
    Source(Slot),
    /// The usage object of a slot.
    Record(Slot),
    /// Gemini's `candidates` array in the top-level object: its elements
    /// are read (the only array the skim reads).
    Candidates,
    /// One object in `candidates`, read for its `finishReason`.
    Candidate,
}

impl Frame {
    /// Its nesting depth: the top-level object is at depth 1.
    pub(super) fn depth(self) -> u8 {
        match self {
            Frame::Top => 1,
            Frame::Source(_)
            | Frame::Record(Slot::Top | Slot::Gemini | Slot::Ollama)
            | Frame::Candidates => 2,
            Frame::Record(Slot::Message | Slot::Response) | Frame::Candidate => 3,
        }
    }

    /// The object it sits in; `None` for the top-level object.
    pub(super) fn parent(self) -> Option<Frame> {
        match self {
            Frame::Top => None,
            Frame::Source(_)
            | Frame::Record(Slot::Top | Slot::Gemini | Slot::Ollama)
            | Frame::Candidates => Some(Frame::Top),
            Frame::Record(slot) => Some(Frame::Source(slot)),
            Frame::Candidate => Some(Frame::Candidates),
        }
    }
}

/// Where the skim is in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum At {
    /// Before the document's value.
    Start,
    /// In a read object, where a key may start; `first` right after `{`,
    /// where `}` may come instead.
    Key { first: bool },
    /// Inside a key of a read object: its bytes go to the key buffer.
    InKey,
    /// After `\` in such a key.
    KeyEscape,
    /// Inside `\uXXXX` in such a key: digits still to come, code so far.
    KeyHex { left: u8, code: u16 },
    /// After a key: `:`.
    Colon,
    /// After `:`: a value.
    Value,
    /// After a value in a read object: `,` or `}` (in `candidates`: `,`
    /// or `]`).
    After,
    /// In `candidates`, where an element may start; `first` right after
    /// `[`, where `]` may come instead.
    Element { first: bool },
    /// Inside a token count.
    Number(Num),
    /// Skipping a value, inside its arrays and objects, outside strings.
    Tree,
    /// Skipping a string: a skipped value or one inside it.
    Str,
    /// After `\` in a skipped string.
    StrEscape,
    /// Skipping a number or literal that is a whole value.
    Scalar,
    /// After the document's value: whitespace only.
    Done,
    /// Not JSON, as far as the skim checks; nothing more is read.
    Failed,
}
