//! The kit's way of building a command: arguments appended to a reused
//! [`CommandArgs`] arena, the key written from its parts, integers with
//! `itoa`, then encoded into a reused `BytesMut`.

use crate::inputs::{KeyFields, TTL};
use kit::resp::CommandArgs;

/// Fills `args` (cleared first) with `EVALSHA <sha> 1 <key> <ttl>`, the key
/// concatenated from `k`'s parts as the limiter does.
pub fn evalsha_args(args: &mut CommandArgs, sha: &[u8], k: &KeyFields<'_>) {
    let mut start = itoa::Buffer::new();
    args.clear();
    args.push(b"EVALSHA");
    args.push(sha);
    args.push_int(1);
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
    args.push_int(TTL);
}
