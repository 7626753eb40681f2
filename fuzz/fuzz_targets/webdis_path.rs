//! Webdis path escaping: every argument, escaped into a path segment and
//! unescaped again, is itself; a segment holds only what webdis takes
//! literally (ASCII letters, digits, `-`, `_`) and `%XX` escapes. A whole
//! command, pushed argument by argument (whole, in parts, or as a counter
//! key) in either form, reads back as its arguments.
//!
//! Input: arguments separated by NUL bytes; each argument's first byte
//! picks how it is pushed.
#![no_main]

use kit::resp::{decode, push_path_segment, CommandBuf, Form, Reply};
use libfuzzer_sys::fuzz_target;

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A path segment's bytes, read strictly: plain bytes as they are, `%`
/// and two uppercase hex digits as that byte, anything else refused.
fn unescape(segment: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(segment.len());
    let mut rest = segment;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (hi, lo) = (hex(*tail.first()?)?, hex(*tail.get(1)?)?);
            out.push(hi << 4 | lo);
            rest = &tail[2..];
        } else {
            if !plain(b) {
                return None;
            }
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// The arguments of a finished webdis path, `/a/b.raw`.
fn path_args(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    let path = path.strip_suffix(b".raw")?;
    if path.is_empty() {
        return Some(Vec::new());
    }
    path.strip_prefix(b"/")?
        .split(|&b| b == b'/')
        .map(unescape)
        .collect()
}

/// The arguments of a finished RESP command: an array of bulk strings.
fn resp_args(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let decoded = decode(bytes).ok()?;
    let Reply::Array(items) = decoded.reply(bytes) else {
        return None;
    };
    items
        .iter()
        .map(|item| match item {
            Reply::Bulk(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let args: Vec<&[u8]> = data.split(|&b| b == 0).take(32).collect();
    let mut segment = Vec::new();
    for arg in &args {
        segment.clear();
        push_path_segment(&mut segment, arg);
        let body = segment.strip_prefix(b"/").expect("a segment starts with /");
        assert_eq!(unescape(body).as_deref(), Some(*arg), "round trip");
    }
    let mut buf = CommandBuf::default();
    for form in [Form::Resp, Form::Path] {
        buf.begin(form);
        let mut want: Vec<Vec<u8>> = Vec::new();
        for arg in &args {
            let how = arg.first().copied().unwrap_or(0);
            match how % 4 {
                // An integer.
                0 if arg.len() >= 8 => {
                    let n = i64::from_le_bytes(arg[..8].try_into().unwrap_or_default());
                    buf.push_int(n);
                    want.push(n.to_string().into_bytes());
                }
                // In two parts, cut where the byte says.
                1 => {
                    let at = usize::from(how) % (arg.len() + 1);
                    buf.push_parts(&[&arg[..at], &arg[at..]]);
                    want.push(arg.to_vec());
                }
                // A counter key: head, `}:`, a plain window.
                2 => {
                    segment.clear();
                    push_path_segment(&mut segment, arg);
                    buf.push_key(&segment, &[arg, b"}:", b"1700000000"]);
                    want.push([*arg, b"}:1700000000"].concat());
                }
                _ => {
                    buf.push(arg);
                    want.push(arg.to_vec());
                }
            }
        }
        buf.finish();
        let read = match form {
            Form::Resp => resp_args(buf.bytes()),
            Form::Path => path_args(buf.bytes()),
        };
        assert_eq!(read, Some(want), "{form:?} command reads back");
    }
});
