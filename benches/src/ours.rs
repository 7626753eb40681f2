//! The kit's way of writing a command, as its `Redis` builder writes one:
//! every argument written once, straight into a reused [`CommandBuf`] in
//! its transport's bytes. What the kit prepares beforehand is prepared
//! here beforehand too ([`Prepared`]): the script's name and digest in
//! both forms with a reserved `numkeys` (the kit's `Script` holds them
//! from compile time) and the
//! counter key's head with its path segment (escaped at configuration).
//! Per command: the key's value, `}:` and its window's digits (`itoa`),
//! `numkeys` filled in place, the TTL.
//!
//! Beside it, [`Args`]: the same arguments in an arena, for
//! `redis-protocol`'s borrowed encoder.

use crate::inputs::{KeyFields, TTL};
use kit::resp::{push_path_segment, CommandBuf, Form};

/// What the kit has ready before a request: see the module documentation.
#[derive(Debug, Clone)]
pub struct Prepared {
    evalsha_resp: Vec<u8>,
    evalsha_path: Vec<u8>,
    head: Vec<u8>,
    segment: Vec<u8>,
}

impl Prepared {
    /// For EVALSHA of `sha` and keys of `k`'s rule and header.
    pub fn new(sha: &str, k: &KeyFields<'_>) -> Self {
        let evalsha_resp =
            format!("$7\r\nEVALSHA\r\n${}\r\n{sha}\r\n$1\r\n0\r\n", sha.len()).into_bytes();
        let evalsha_path = format!("/EVALSHA/{sha}/0").into_bytes();
        let head = format!("{}:{{{}:{}:{}:", k.prefix, k.rule, k.kind, k.name).into_bytes();
        let mut segment = Vec::new();
        push_path_segment(&mut segment, &head);
        Prepared {
            evalsha_resp,
            evalsha_path,
            head,
            segment,
        }
    }
}

/// Writes `EVALSHA <sha> 1 <key> <ttl>` in `form` into `cmd`, as the
/// limiter's request does.
pub fn evalsha(cmd: &mut CommandBuf, form: Form, p: &Prepared, k: &KeyFields<'_>) {
    cmd.begin(form);
    let numkeys = cmd.push_script(&p.evalsha_resp, &p.evalsha_path);
    push_key(cmd, p, k);
    cmd.push_int(TTL);
    cmd.fill_count(numkeys, 1);
    cmd.finish();
}

/// Writes `INCRBY <key> <delta>` in `form` into `cmd`.
pub fn incrby(cmd: &mut CommandBuf, form: Form, p: &Prepared, k: &KeyFields<'_>, delta: i64) {
    cmd.begin(form);
    cmd.push(b"INCRBY");
    push_key(cmd, p, k);
    cmd.push_int(delta);
    cmd.finish();
}

fn push_key(cmd: &mut CommandBuf, p: &Prepared, k: &KeyFields<'_>) {
    let mut start = itoa::Buffer::new();
    cmd.push_key(
        &p.segment,
        &[
            &p.head,
            k.value.as_bytes(),
            b"}:",
            start.format(k.start).as_bytes(),
        ],
    );
}

/// Arguments in a reused arena, for `redis-protocol`'s encoder.
#[derive(Debug, Default, Clone)]
pub struct Args {
    arena: Vec<u8>,
    ends: smallvec::SmallVec<[usize; 8]>,
}

impl Args {
    fn clear(&mut self) {
        self.arena.clear();
        self.ends.clear();
    }

    fn push_parts(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.arena.extend_from_slice(part);
        }
        self.ends.push(self.arena.len());
    }

    fn push_int(&mut self, n: i64) {
        let mut digits = itoa::Buffer::new();
        self.push_parts(&[digits.format(n).as_bytes()]);
    }

    /// The arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = core::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| self.arena.get(start..end).unwrap_or_default())
    }
}

/// Fills `args` (cleared first) with `EVALSHA <sha> 1 <key> <ttl>`, the key
/// concatenated from `k`'s parts.
pub fn evalsha_args(args: &mut Args, sha: &[u8], k: &KeyFields<'_>) {
    args.clear();
    args.push_parts(&[b"EVALSHA"]);
    args.push_parts(&[sha]);
    args.push_int(1);
    push_key_parts(args, k);
    args.push_int(TTL);
}

/// Fills `args` (cleared first) with `INCRBY <key> <delta>`.
pub fn incrby_args(args: &mut Args, k: &KeyFields<'_>, delta: i64) {
    args.clear();
    args.push_parts(&[b"INCRBY"]);
    push_key_parts(args, k);
    args.push_int(delta);
}

fn push_key_parts(args: &mut Args, k: &KeyFields<'_>) {
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
pub fn encode_with_redis_protocol(args: &Args, out: &mut bytes::BytesMut) {
    use redis_protocol::resp2::encode::extend_encode_borrowed;
    use redis_protocol::resp2::types::BorrowedFrame;
    out.clear();
    let frames: smallvec::SmallVec<[BorrowedFrame<'_>; 12]> =
        args.iter().map(BorrowedFrame::BulkString).collect();
    // The buffer grows to fit, so encoding cannot fail.
    let _ = extend_encode_borrowed(out, &BorrowedFrame::Array(&frames), false);
}
