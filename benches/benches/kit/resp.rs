//! `resp_encode` and `resp_decode`: the kit's RESP and webdis encoders and
//! its borrowed decoder beside `format!`-built buffers and
//! `redis-protocol`'s owned frames.

use benches::inputs::{script_sha1, BULK_REPLY, INTEGER_REPLY, KEY};
use benches::{naive, ours};
use bytes::BytesMut;
use criterion::{criterion_group, Criterion};
use kit::resp::{decode as kit_decode, encode_command, encode_webdis_path, CommandArgs};
use redis_protocol::resp2::decode::decode as owned_decode;
use redis_protocol::resp2::types::OwnedFrame;
use std::hint::black_box;

/// EVALSHA sha 1 <52-byte key> 60, and its webdis path.
fn bench_encode(c: &mut Criterion) {
    let sha = script_sha1();
    let mut group = c.benchmark_group("resp_encode");

    // The command built from its parts and encoded, each time.
    let mut args = CommandArgs::default();
    let mut wire = BytesMut::new();
    group.bench_function("evalsha/kit_reused_buffer", |b| {
        b.iter(|| {
            ours::evalsha_args(&mut args, black_box(sha.as_bytes()), black_box(&KEY));
            encode_command(&args, &mut wire);
            black_box(&wire[..]);
        });
    });
    group.bench_function("evalsha/naive_format_vec", |b| {
        b.iter(|| naive::resp_command(&naive::evalsha_args(black_box(&sha), black_box(&KEY))));
    });
    group.bench_function("evalsha/redis_protocol_owned_frame", |b| {
        b.iter(|| {
            naive::owned_frame_command(naive::evalsha_args(black_box(&sha), black_box(&KEY)))
        });
    });

    // The webdis path of an already built command (the key has `:{}` to escape).
    ours::evalsha_args(&mut args, sha.as_bytes(), &KEY);
    let owned = naive::evalsha_args(&sha, &KEY);
    assert_eq!(args.get(3), owned[3].as_bytes());
    group.bench_function("webdis_path/kit_reused_buffer", |b| {
        b.iter(|| {
            encode_webdis_path(black_box(&args), &mut wire);
            black_box(&wire[..]);
        });
    });
    group.bench_function("webdis_path/naive_string_format", |b| {
        b.iter(|| naive::webdis_path(black_box(&owned)));
    });
    group.finish();
}

/// An integer reply (`:42`) and a 40-byte bulk reply, decoded and read.
fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("resp_decode");
    for (name, bytes) in [("integer", INTEGER_REPLY), ("bulk", BULK_REPLY)] {
        group.bench_function(format!("{name}/kit_range_borrowed"), |b| {
            b.iter(|| {
                let bytes = black_box(bytes);
                let decoded = kit_decode(bytes).unwrap();
                let reply = decoded.reply(bytes);
                black_box((reply.as_i64(), reply.as_bytes().map(<[u8]>::len)));
            });
        });
        group.bench_function(format!("{name}/redis_protocol_owned"), |b| {
            b.iter(|| {
                let bytes = black_box(bytes);
                let (frame, used) = owned_decode(bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                let read = match &frame {
                    OwnedFrame::Integer(n) => (Some(*n), None),
                    OwnedFrame::BulkString(s) => (None, Some(s.len())),
                    _ => (None, None),
                };
                black_box(read);
                frame
            });
        });
    }
    group.finish();
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
