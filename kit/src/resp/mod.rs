//! RESP2 on the wire: commands written straight into the bytes their
//! transport sends, replies decoded in place.
//!
//! A command is written once, argument by argument, in its final form into
//! a [`CommandBuf`] that keeps its capacity between commands: a RESP array
//! of bulk strings for Higress's native Redis call, or a webdis path
//! (`/CMD/arg1/arg2.raw`, every argument percent-encoded). A command is
//! always an array of bulk strings, so the kit writes that one shape
//! itself: much faster than building `redis-protocol` borrowed frames and
//! letting it size and write them (`benches`, group `resp_encode`, compares
//! the two), and the tests check both give the same bytes.
//!
//! Decoding is the kit's own too: a reply is a flat list of frames holding
//! offsets into the received bytes, kept inline for up to seven values,
//! and [`Reply`] hands out slices of those bytes without copying. It reads
//! what `redis-protocol`'s range decoder reads (the tests compare the two)
//! without its parser combinators, CRC tables and `Vec` per array in the
//! module, and without allocating for the replies a plugin gets.

mod decode;
mod encode;
mod path;
#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
mod tests;

pub use decode::{decode, decode_into, Decoded, InvalidReply, Reply, ReplyArray};
pub(crate) use encode::KEY_CLOSE;
pub use encode::{CommandBuf, Form, PATH_COUNT, RESP_COUNT};
pub use path::push_path_segment;
