//! What a phase handler returns: the [`Flow`] of the stream.
//!
//! It sits below both the per-request I/O, whose `respond` makes the one
//! [`Flow::Responded`], and the plugin API, whose handlers return it.

/// What a phase handler wants the stream to do next.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a phase handler's flow decides whether the request goes on"]
pub enum Flow {
    /// Go on to the next filter.
    Continue,
    /// Hold the stream until an outstanding Redis or HTTP call answers.
    ///
    /// In a [`BodyMode::Stream`](crate::BodyMode::Stream) handler for a
    /// chunk that is not the last, pausing without a call holds the bytes
    /// seen so far back; the next chunk arrives anyway, and continuing on
    /// it releases them all.
    /// Anywhere else the kit resumes the stream itself, with a log line,
    /// when a handler pauses without any call in flight: nothing would ever
    /// wake it.
    Pause,
    /// The stream was answered locally with
    /// [`Io::respond`](crate::Io::respond).
    Responded(Responded),
}

/// Proof that a local response was sent; only
/// [`Io::respond`](crate::Io::respond) makes one.
#[derive(Debug, PartialEq, Eq)]
pub struct Responded(pub(crate) ());
