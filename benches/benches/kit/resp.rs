//! `resp_encode` and `resp_decode`: the kit's command writer (RESP and
//! webdis path) and its borrowed decoder beside `redis-protocol`'s
//! borrowed encoder and range decoder, its owned frames, and
//! `format!`-built buffers.

use crate::{assert_no_allocations, report_allocations};
use benches::inputs::{script_sha1, KEY, REPLIES};
use benches::naive;
use benches::ours::{self, Args, Prepared};
use bytes::BytesMut;
use criterion::{criterion_group, Criterion};
use kit::resp::{decode as kit_decode, CommandBuf, Form, Reply};
use redis_protocol::resp2::decode::{decode as owned_decode, decode_range};
use redis_protocol::resp2::types::{OwnedFrame, RangeFrame};
use std::hint::black_box;

/// `EVALSHA sha 1 <52-byte key> 60` (the limiter's count) and `INCRBY
/// <52-byte key> 1234` (the token quota's charge), each written from its
/// parts every time: by the kit as it writes a command (straight into its
/// transport's bytes), by `redis-protocol` over the same arguments, and
/// the `format!` ways. Then the webdis path of the EVALSHA.
fn bench_encode(c: &mut Criterion) {
    let sha = script_sha1();
    let prepared = Prepared::new(&sha, &KEY);
    let mut group = c.benchmark_group("resp_encode");
    let mut cmd = CommandBuf::default();
    let mut args = Args::default();
    let mut wire = BytesMut::new();
    type Write<'a> = &'a dyn Fn(&mut CommandBuf, Form);
    type Build<'a> = &'a dyn Fn(&mut Args);
    type BuildOwned<'a> = &'a dyn Fn() -> Vec<String>;
    let commands: [(&str, Write<'_>, Build<'_>, BuildOwned<'_>); 2] = [
        (
            "evalsha",
            &|cmd, form| ours::evalsha(cmd, form, black_box(&prepared), black_box(&KEY)),
            &|args| ours::evalsha_args(args, black_box(sha.as_bytes()), black_box(&KEY)),
            &|| naive::evalsha_args(black_box(&sha), black_box(&KEY)),
        ),
        (
            "incrby",
            &|cmd, form| {
                ours::incrby(
                    cmd,
                    form,
                    black_box(&prepared),
                    black_box(&KEY),
                    black_box(1234),
                )
            },
            &|args| ours::incrby_args(args, black_box(&KEY), black_box(1234)),
            &|| naive::incrby_args(black_box(&KEY), black_box(1234)),
        ),
    ];
    for (name, write, build, build_owned) in commands {
        assert_no_allocations(&format!("resp_encode/{name}/kit_reused_buffer"), || {
            write(&mut cmd, Form::Resp);
            black_box(cmd.bytes());
        });
        report_allocations(
            &format!("resp_encode/{name}/redis_protocol_borrowed_reused"),
            || {
                build(&mut args);
                ours::encode_with_redis_protocol(&args, &mut wire);
                black_box(&wire[..]);
            },
        );
        report_allocations(&format!("resp_encode/{name}/naive_format_vec"), || {
            black_box(naive::resp_command(&build_owned()));
        });
        report_allocations(
            &format!("resp_encode/{name}/redis_protocol_owned_frame"),
            || {
                black_box(naive::owned_frame_command(build_owned()));
            },
        );
        group.bench_function(format!("{name}/kit_reused_buffer"), |b| {
            b.iter(|| {
                write(&mut cmd, Form::Resp);
                black_box(cmd.bytes());
            });
        });
        group.bench_function(format!("{name}/redis_protocol_borrowed_reused"), |b| {
            b.iter(|| {
                build(&mut args);
                ours::encode_with_redis_protocol(&args, &mut wire);
                black_box(&wire[..]);
            });
        });
        group.bench_function(format!("{name}/naive_format_vec"), |b| {
            b.iter(|| naive::resp_command(&build_owned()));
        });
        group.bench_function(format!("{name}/redis_protocol_owned_frame"), |b| {
            b.iter(|| naive::owned_frame_command(build_owned()));
        });
    }

    // The webdis path of the EVALSHA (the key has `:{}` to escape), each
    // written from its parts.
    assert_no_allocations("resp_encode/webdis_path/kit_reused_buffer", || {
        ours::evalsha(&mut cmd, Form::Path, black_box(&prepared), black_box(&KEY));
        black_box(cmd.bytes());
    });
    report_allocations("resp_encode/webdis_path/naive_string_format", || {
        black_box(naive::webdis_path(&naive::evalsha_args(
            black_box(&sha),
            black_box(&KEY),
        )));
    });
    group.bench_function("webdis_path/kit_reused_buffer", |b| {
        b.iter(|| {
            ours::evalsha(&mut cmd, Form::Path, black_box(&prepared), black_box(&KEY));
            black_box(cmd.bytes());
        });
    });
    group.bench_function("webdis_path/naive_string_format", |b| {
        b.iter(|| naive::webdis_path(&naive::evalsha_args(black_box(&sha), black_box(&KEY))));
    });
    group.finish();
}

/// The replies a plugin gets: an integer (`:17`), nil (`$-1`), a 40-byte
/// bulk string, a three-element array and a NOSCRIPT error, decoded and
/// read. The kit's decoder beside `redis-protocol`'s range decoder (no
/// copies; the kit's own decoder replaced it) and its owned decoder.
fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("resp_decode");
    for (name, bytes) in REPLIES {
        let kit_routine = || {
            let decoded = kit_decode(black_box(bytes)).unwrap();
            black_box(read_reply(decoded.reply(bytes)));
        };
        // Replies of up to 7 frames (an array of up to 6 scalars) are kept
        // inline: none of these allocates.
        assert_no_allocations(&format!("resp_decode/{name}/kit"), kit_routine);
        report_allocations(&format!("resp_decode/{name}/redis_protocol_range"), || {
            let (frame, _) = decode_range(black_box(bytes)).unwrap().unwrap();
            black_box(read_range(bytes, &frame));
        });
        report_allocations(&format!("resp_decode/{name}/redis_protocol_owned"), || {
            let (frame, _) = owned_decode(black_box(bytes)).unwrap().unwrap();
            black_box(read_owned(&frame));
        });
        group.bench_function(format!("{name}/kit"), |b| {
            b.iter(|| {
                let bytes = black_box(bytes);
                let decoded = kit_decode(bytes).unwrap();
                black_box(read_reply(decoded.reply(bytes)));
            });
        });
        group.bench_function(format!("{name}/redis_protocol_range"), |b| {
            b.iter(|| {
                let bytes = black_box(bytes);
                let (frame, used) = decode_range(bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                black_box(read_range(bytes, &frame));
                frame
            });
        });
        group.bench_function(format!("{name}/redis_protocol_owned"), |b| {
            b.iter(|| {
                let bytes = black_box(bytes);
                let (frame, used) = owned_decode(bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                black_box(read_owned(&frame));
                frame
            });
        });
    }
    group.finish();
}

/// What a plugin reads of a reply: the integer, the byte length of a
/// string or error, or the sum of an array's integers.
fn read_reply(reply: Reply<'_>) -> i64 {
    match reply {
        Reply::Integer(n) => n,
        Reply::Bulk(s) | Reply::Simple(s) | Reply::Error(s) => s.len() as i64,
        Reply::Nil => -1,
        Reply::Array(items) => items.iter().filter_map(|r| r.as_i64()).sum(),
    }
}

fn read_range(bytes: &[u8], frame: &RangeFrame) -> i64 {
    match frame {
        RangeFrame::Integer(n) => *n,
        RangeFrame::BulkString((s, e))
        | RangeFrame::SimpleString((s, e))
        | RangeFrame::Error((s, e)) => bytes[*s..*e].len() as i64,
        RangeFrame::Null => -1,
        RangeFrame::Array(items) => items.iter().map(|f| read_range(bytes, f)).sum(),
    }
}

fn read_owned(frame: &OwnedFrame) -> i64 {
    match frame {
        OwnedFrame::Integer(n) => *n,
        OwnedFrame::BulkString(s) => s.len() as i64,
        OwnedFrame::SimpleString(s) => s.len() as i64,
        OwnedFrame::Error(s) => s.len() as i64,
        OwnedFrame::Null => -1,
        OwnedFrame::Array(items) => items.iter().map(read_owned).sum(),
    }
}

criterion_group! {
    name = encode;
    config = crate::settings();
    targets = bench_encode
}

criterion_group! {
    name = decode;
    config = crate::settings();
    targets = bench_decode
}
