//! Commands written as `redis-protocol` and percent-encoding's definition
//! write them, in both forms; and the generator the decoder's tests share.

use super::path::{is_segment_of, path_plain};
use super::reference::{command, segment};
use super::*;
const FORMS: [Form; 2] = [Form::Resp, Form::Path];

/// `args` pushed one by one into `buf`, finished.
fn written<'b>(buf: &'b mut CommandBuf, form: Form, args: &[&[u8]]) -> &'b [u8] {
    buf.begin(form);
    for arg in args {
        buf.push(arg);
    }
    buf.finish();
    buf.bytes()
}

#[test]
fn writes_resp_arrays_and_webdis_paths() {
    let mut buf = CommandBuf::default();
    let args: [&[u8]; 3] = [b"INCRBY", b"k", b"-5"];
    assert_eq!(
        written(&mut buf, Form::Resp, &args),
        b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n-5\r\n"
    );
    assert_eq!(written(&mut buf, Form::Path, &args), b"/INCRBY/k/-5.raw");
    assert_eq!(written(&mut buf, Form::Resp, &[]), b"*0\r\n");
    assert_eq!(written(&mut buf, Form::Path, &[]), b".raw");
    // Integers of every length, both signs and both ends.
    let mut ints = vec![i64::MIN, i64::MIN + 1, i64::MAX, 0, -1];
    ints.extend((0..19).flat_map(|p| {
        let n = 10i64.pow(p);
        [n - 1, n, n + 1, -n, 1 - n]
    }));
    for form in FORMS {
        for n in ints.iter().copied() {
            buf.begin(form);
            buf.push_int(n);
            buf.finish();
            let digits = n.to_string();
            assert_eq!(buf.bytes(), command(form, &[digits.as_bytes()]), "{n}");
        }
    }
}

#[test]
fn writes_what_redis_protocol_and_escaping_write() {
    // A small LCG: arguments of every length class, empty ones and
    // CRLF and high bytes inside arguments included, pushed whole, in
    // parts, as integers or as plain arguments, into one buffer that
    // goes from long commands to short ones and between forms.
    let mut rng = Lcg(0x2545_f491);
    let mut buf = CommandBuf::default();
    for round in 0..1000 {
        let form = FORMS[round % 2];
        let mut args: Vec<Vec<u8>> = Vec::new();
        buf.begin(form);
        for _ in 0..rng.below(14) {
            let arg: Vec<u8> = match rng.below(4) {
                0 => {
                    let n = rng.below(1 << 20) as i64 - (1 << 19);
                    buf.push_int(n);
                    n.to_string().into_bytes()
                }
                1 => {
                    let len = rng.pick(&[0, 1, 9, 10, 99, 100]);
                    let arg: Vec<u8> = (0..len).map(|_| rng.pick(&b"aZ09-_"[..])).collect();
                    buf.push_plain(&arg);
                    arg
                }
                _ => {
                    let len = rng.pick(&[0, 1, 9, 10, 99, 100, 1000]);
                    let arg: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                    let (a, b) = arg.split_at(rng.below(len + 1));
                    let (b, c) = b.split_at(rng.below(b.len() + 1));
                    buf.push_parts(&[a, b, c]);
                    arg
                }
            };
            args.push(arg);
        }
        buf.finish();
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        assert_eq!(buf.bytes(), command(form, &args), "{form:?} {args:?}");
        assert_eq!(buf.len(), args.len());
    }
}

#[test]
fn every_byte_value_is_escaped_as_defined() {
    let mut buf = CommandBuf::default();
    for b in 0..=u8::MAX {
        let arg = [b, b'a', b];
        let mut want = segment(&arg);
        want.extend_from_slice(b".raw");
        assert_eq!(written(&mut buf, Form::Path, &[&arg]), want, "{b}");
        assert_eq!(path_plain(&[b]), segment(&[b]).len() == 2, "{b}");
    }
    assert_eq!(
        written(
            &mut buf,
            Form::Path,
            &[b"GET", "a/b%c d.e+\r\né".as_bytes()]
        ),
        b"/GET/a%2Fb%25c%20d%2Ee%2B%0D%0A%C3%A9.raw"
    );
}

/// A small LCG, so the random tests are the same on every run.
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }

    pub(super) fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

#[test]
fn a_reserved_count_is_filled_in_place() {
    // One digit in place, more by moving what follows: the bytes of
    // the count pushed as an argument, in both forms.
    let mut buf = CommandBuf::default();
    for form in FORMS {
        for n in [0u64, 1, 9, 10, 12, 99, 100, 12_345, u64::MAX] {
            buf.begin(form);
            buf.push(b"EVAL");
            buf.push(b"return 1");
            let at = buf.reserve_count();
            buf.push(b"k/1");
            buf.push_int(60);
            buf.fill_count(at, n);
            buf.finish();
            let count = n.to_string();
            let args: [&[u8]; 5] = [b"EVAL", b"return 1", count.as_bytes(), b"k/1", b"60"];
            assert_eq!(buf.bytes(), command(form, &args), "{form:?} {n}");
        }
    }
}

#[test]
fn written_and_plain_arguments_are_what_pushing_them_writes() {
    let digest = b"e0e1f9fabfc9d4800c877a703b823ac0578ff831";
    let mut buf = CommandBuf::default();
    for form in FORMS {
        buf.begin(form);
        let resp = [
            &b"$7\r\nEVALSHA\r\n$40\r\n"[..],
            digest,
            b"\r\n",
            RESP_COUNT,
        ]
        .concat();
        let path = [&b"/EVALSHA/"[..], digest, PATH_COUNT].concat();
        let at = buf.push_script(&resp, &path);
        buf.push_plain(b"a_b-C9");
        buf.push_int(-60);
        buf.fill_count(at, 1);
        buf.finish();
        let args: [&[u8]; 5] = [b"EVALSHA", digest, b"1", b"a_b-C9", b"-60"];
        assert_eq!(buf.bytes(), command(form, &args), "{form:?}");
    }
    for plain in [&b"EVALSHA"[..], b"-12", b"a_b-C9", b""] {
        assert!(path_plain(plain), "{plain:?}");
    }
    for escaped in [&b"a.b"[..], b"a/b", b"a b", b"\xff", b"+"] {
        assert!(!path_plain(escaped), "{escaped:?}");
    }
}

#[test]
fn prepared_keys_write_what_escaping_the_whole_key_writes() {
    // A counter key's head comes with its segment, the value between
    // it and `}:` is escaped, `}:` and the window are copied: the
    // bytes escaping the whole key byte by byte gives, and in RESP the
    // parts concatenated. Values: plain, empty, with an escape first,
    // last or inside, ending in `}:` themselves, and longer than the
    // gathering block. Then a configured key (head and window) and a
    // head alone.
    let long_plain = "k".repeat(300);
    let long_mixed = "a:".repeat(150);
    let values: [&[u8]; 11] = [
        b"k-3f9a2c71d4e5b6a7",
        b"",
        b":abc",
        b"abc%",
        b"user 1234",
        b"x}:",
        b"}:",
        b"\xff\x00",
        b"k/1 %\xff",
        long_plain.as_bytes(),
        long_mixed.as_bytes(),
    ];
    let head = b"limiter:{api:header:x-api-key:".as_slice();
    let mut prepared = Vec::new();
    push_path_segment(&mut prepared, head);
    assert_eq!(prepared, segment(head));
    assert!(is_segment_of(&prepared, head));
    assert!(!is_segment_of(&prepared, b"limiter"));
    let mut keys: Vec<Vec<&[u8]>> = values
        .iter()
        .map(|value| vec![head, value, KEY_CLOSE, b"1700000040"])
        .collect();
    keys.push(vec![head, b"1700000040"]);
    keys.push(vec![head]);
    let mut buf = CommandBuf::default();
    for form in FORMS {
        for parts in &keys {
            buf.begin(form);
            buf.push_plain(b"EVALSHA");
            buf.push(b"x.y");
            buf.push_key(&prepared, parts);
            buf.push_int(60);
            buf.finish();
            let key = parts.concat();
            let args: [&[u8]; 4] = [b"EVALSHA", b"x.y", &key, b"60"];
            assert_eq!(buf.bytes(), command(form, &args), "{form:?} {parts:?}");
        }
    }
    buf.begin(Form::Path);
    buf.push_key(&prepared, &keys[8]);
    buf.finish();
    assert_eq!(
        buf.bytes(),
        b"/limiter%3A%7Bapi%3Aheader%3Ax-api-key%3Ak%2F1%20%25%FF%7D%3A1700000040.raw"
    );
}

#[test]
fn an_eval_of_a_kept_evalsha_is_a_fresh_eval() {
    // What a NOSCRIPT retry sends: the kept EVALSHA's arguments from
    // `numkeys` on, after EVAL and the source, in both forms, with
    // counts that took one digit and that moved the arguments.
    let digest = [b'a'; 40];
    let source = b"return redis.call('INCR', KEYS[1]) -- 1/2";
    let mut kept = CommandBuf::default();
    let mut fresh = CommandBuf::default();
    let mut retry = CommandBuf::default();
    for form in FORMS {
        for keys in [0u64, 1, 2, 9, 10, 12] {
            let names: Vec<String> = (0..keys).map(|k| format!("k:{{{k}}}")).collect();
            for (buf, name) in [(&mut kept, &b"EVALSHA"[..]), (&mut fresh, b"EVAL")] {
                buf.begin(form);
                buf.push(name);
                buf.push(if name == b"EVAL" { source } else { &digest });
                let at = buf.reserve_count();
                for name in &names {
                    buf.push(name.as_bytes());
                }
                buf.push(b"6 0");
                buf.fill_count(at, keys);
                buf.finish();
            }
            retry.begin(Form::Resp);
            retry.push(b"left over");
            retry.eval_of(&kept, source);
            assert_eq!(retry.bytes(), fresh.bytes(), "{form:?} {keys}");
            assert_eq!(retry.len(), fresh.len());
        }
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "is not the first part's path segment")]
fn a_wrong_segment_is_caught_in_debug_builds() {
    CommandBuf::new(Form::Path).push_key(b"/a", &[b"b"]);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "the last part is not path-plain")]
fn an_escapable_last_part_is_caught_in_debug_builds() {
    CommandBuf::new(Form::Path).push_key(b"/a", &[b"a", b"b:c"]);
}

#[test]
#[should_panic(expected = "is not path-plain")]
#[cfg(debug_assertions)]
fn marking_an_escapable_argument_plain_is_caught_in_debug_builds() {
    CommandBuf::default().push_plain(b"a:b");
}
