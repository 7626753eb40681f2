//! The kit's way of building a command: arguments appended to a reused
//! [`CommandArgs`] arena, the key written from its parts, integers with
//! `itoa`, then encoded into a reused `BytesMut`.

use crate::inputs::{KeyFields, TTL};
use kit::resp::CommandArgs;

/// Fills `args` (cleared first) with `EVALSHA <sha> 1 <key> <ttl>`, the key
/// concatenated from `k`'s parts as the limiter does.
pub fn evalsha_args(args: &mut CommandArgs, sha: &[u8], k: &KeyFields<'_>) {
    args.clear();
    args.push(b"EVALSHA");
    args.push(sha);
    args.push_int(1);
    push_key(args, k);
    args.push_int(TTL);
}

/// Fills `args` (cleared first) with `INCRBY <key> <delta>`, the token
/// quota's charge, the key written from its parts.
pub fn incrby_args(args: &mut CommandArgs, k: &KeyFields<'_>, delta: i64) {
    args.clear();
    args.push(b"INCRBY");
    push_key(args, k);
    args.push_int(delta);
}

fn push_key(args: &mut CommandArgs, k: &KeyFields<'_>) {
    let mut start = itoa::Buffer::new();
    args.push_parts(&[
        k.prefix.as_bytes(),
        b":{",
        k.rule.as_bytes(),
        b":",
        k.kind.as_bytes(),
        b":",
        k.name.as_bytes(),
        b":",
        k.value.as_bytes(),
        b"}:",
        start.format(k.start).as_bytes(),
    ]);
}

/// `redis-protocol`'s own borrowed encoder over the same arguments: a
/// `BorrowedFrame` per argument on the stack, then `extend_encode_borrowed`
/// into the reused buffer. The best alternative to the kit's writer.
pub fn encode_with_redis_protocol(args: &CommandArgs, out: &mut bytes::BytesMut) {
    use redis_protocol::resp2::encode::extend_encode_borrowed;
    use redis_protocol::resp2::types::BorrowedFrame;
    out.clear();
    let frames: smallvec::SmallVec<[BorrowedFrame<'_>; 12]> =
        args.iter().map(BorrowedFrame::BulkString).collect();
    // The buffer grows to fit, so encoding cannot fail.
    let _ = extend_encode_borrowed(out, &BorrowedFrame::Array(&frames), false);
}
