//! The bytes a command should be written as, by other means: RESP by
//! `redis-protocol`, a path by percent-encoding's definition.

use super::Form;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::BorrowedFrame;

/// `args` in `form`.
pub(crate) fn command(form: Form, args: &[&[u8]]) -> Vec<u8> {
    match form {
        Form::Resp => {
            let frames: Vec<BorrowedFrame<'_>> =
                args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
            let mut out = bytes::BytesMut::new();
            extend_encode_borrowed(&mut out, &BorrowedFrame::Array(&frames), false).unwrap();
            out.to_vec()
        }
        Form::Path => {
            let mut out: Vec<u8> = args.iter().flat_map(|a| segment(a)).collect();
            out.extend_from_slice(b".raw");
            out
        }
    }
}

/// `/` and `arg` percent-encoded by the definition, a byte at a time.
pub(crate) fn segment(arg: &[u8]) -> Vec<u8> {
    let mut out = b"/".to_vec();
    for &b in arg {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}
