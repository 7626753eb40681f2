//! Where one RESP reply ends in a byte stream (RESP2 and the RESP3 types),
//! so replies read from a pipelined connection can be paired with calls.

/// The length of the first complete RESP value in `buf`.
///
/// # Errors
/// `Ok(None)` while the value is incomplete; `Err` with a reason when the
/// bytes are not RESP (the connection is then unusable).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    frame_at(buf, 0, 0)
}

const MAX_DEPTH: usize = 64;

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn number(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("bad RESP length {:?}", String::from_utf8_lossy(line)))
}

/// The end (exclusive) of the value starting at `at`, if complete.
fn frame_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, String> {
    if depth > MAX_DEPTH {
        return Err("RESP nesting too deep".into());
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(eol) = line_end(buf, at + 1) else {
        return Ok(None);
    };
    let line = buf.get(at + 1..eol).unwrap_or_default();
    let after_line = eol + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(after_line)),
        b'$' | b'!' | b'=' => {
            let n = number(line)?;
            if n < 0 {
                return Ok(Some(after_line));
            }
            let end = after_line + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            Ok(Some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(line)?;
            if n < 0 {
                return Ok(Some(after_line));
            }
            let items = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            };
            let mut pos = after_line;
            for _ in 0..items {
                match frame_at(buf, pos, depth + 1)? {
                    Some(next) => pos = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        other => Err(format!("unknown RESP type byte 0x{other:02x}")),
    }
}

/// The arguments of a command encoded as a RESP array of bulk strings, for
/// printing; `None` when the bytes are something else (inline commands).
pub fn command_args(buf: &[u8]) -> Option<Vec<Vec<u8>>> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let eol = line_end(buf, 1)?;
    let n = number(buf.get(1..eol)?).ok()?;
    let mut pos = eol + 2;
    let mut args = Vec::new();
    for _ in 0..n {
        if buf.get(pos) != Some(&b'$') {
            return None;
        }
        let eol = line_end(buf, pos + 1)?;
        let len = usize::try_from(number(buf.get(pos + 1..eol)?).ok()?).ok()?;
        let start = eol + 2;
        args.push(buf.get(start..start + len)?.to_vec());
        pos = start + len + 2;
    }
    Some(args)
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_values_end_at_their_line() {
        assert_eq!(frame_len(b":12\r\n+OK"), Ok(Some(5)));
        assert_eq!(frame_len(b"-ERR x\r\n"), Ok(Some(8)));
        assert_eq!(frame_len(b":12"), Ok(None));
    }

    #[test]
    fn bulk_and_nested_arrays_need_every_byte() {
        let reply = b"*2\r\n$3\r\nabc\r\n*1\r\n:1\r\n";
        assert_eq!(frame_len(reply), Ok(Some(reply.len())));
        for cut in 0..reply.len() {
            assert_eq!(frame_len(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(frame_len(b"$-1\r\n*-1\r\n"), Ok(Some(5)));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(frame_len(b"hello\r\n").is_err());
        assert!(frame_len(b"$x\r\n").is_err());
    }

    #[test]
    fn commands_round_trip() {
        let bytes = encode_command(&[b"INCR", b"k\r\ney"]);
        assert_eq!(
            command_args(&bytes),
            Some(vec![b"INCR".to_vec(), b"k\r\ney".to_vec()])
        );
        assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
    }
}
