//! Byte classes and escapes of JSON text, shared by the lexer and the
//! usage skim.

/// Whether `b` is JSON whitespace.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether `b` ends a line: `\n` or `\r`.
pub(crate) fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// The byte an escape other than `\u` stands for: `\n` for `n`.
pub(crate) fn simple_escape(b: u8) -> Option<u8> {
    Some(match b {
        b'"' | b'\\' | b'/' => b,
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// The first eight bytes of `rest` as a little-endian word, and how many
/// of them are `rest`'s: fewer than eight at its end, where `pad` fills
/// the word (a byte the caller's search never flags).
#[inline(always)]
pub(crate) fn padded_word(rest: &[u8], pad: u8) -> (u64, usize) {
    match rest.first_chunk::<8>() {
        Some(bytes) => (u64::from_le_bytes(*bytes), 8),
        None => {
            let mut bytes = [pad; 8];
            for (slot, &b) in bytes.iter_mut().zip(rest) {
                *slot = b;
            }
            (u64::from_le_bytes(bytes), rest.len())
        }
    }
}
