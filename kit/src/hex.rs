//! Hex digits: a nibble written as its ASCII digit, and an ASCII digit
//! read back as its value.
//!
//! The kit writes hex in percent-escapes of webdis paths, a script's
//! digest, IPv6 addresses, `\xNN` in logged replies and `\u{NN}` in
//! configuration errors, and reads it in IPv6 addresses; plugins read it
//! in JSON's `\uNNNN` escapes. One pair serves them all, so the digits
//! are spelled in one place. Both are `const fn` (a script's digest is
//! written by the compiler) and always inlined: each is a lookup or a
//! compare or two, less than a call, and the escaping loops run them for
//! every byte.

/// Which letters stand for the digits 10 to 15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `a` to `f`: how RFC 5952 writes IPv6 and how Redis shows a
    /// script's SHA-1.
    Lower,
    /// `A` to `F`: how RFC 3986 asks percent-encoding to be written.
    Upper,
}

/// The ASCII hex digit of the low four bits of `nibble`, in `case`.
///
/// The high four bits are ignored, so a byte's two digits are
/// `digit(byte >> 4, case)` and `digit(byte, case)`.
///
/// # Examples
/// ```
/// use kit::hex::{digit, Case};
///
/// assert_eq!(digit(7, Case::Lower), b'7');
/// assert_eq!(digit(12, Case::Lower), b'c');
/// assert_eq!(digit(12, Case::Upper), b'C');
/// let byte = 0x3f;
/// assert_eq!([digit(byte >> 4, Case::Upper), digit(byte, Case::Upper)], *b"3F");
/// ```
// Masked to four bits, the index is always within the sixteen digits.
#[allow(clippy::indexing_slicing)]
#[inline(always)]
pub const fn digit(nibble: u8, case: Case) -> u8 {
    let digits: &[u8; 16] = match case {
        Case::Lower => b"0123456789abcdef",
        Case::Upper => b"0123456789ABCDEF",
    };
    digits[(nibble & 0xf) as usize]
}

/// The value, 0 to 15, of the ASCII hex digit `b` in either case.
///
/// # Examples
/// ```
/// use kit::hex::value;
///
/// assert_eq!(value(b'7'), Some(7));
/// assert_eq!(value(b'c'), Some(12));
/// assert_eq!(value(b'C'), Some(12));
/// // Four digits of a `\u` escape, the first one first.
/// let code = b"00e9".iter().try_fold(0u16, |code, &b| Some(code << 4 | u16::from(value(b)?)));
/// assert_eq!(code, Some(0xe9));
/// ```
///
/// # Errors
/// `None` for any byte that is not `0`-`9`, `a`-`f` or `A`-`F`.
#[inline(always)]
pub const fn value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nibble_reads_back_as_itself_in_both_cases() {
        for nibble in 0..16u8 {
            for case in [Case::Lower, Case::Upper] {
                assert_eq!(
                    value(digit(nibble, case)),
                    Some(nibble),
                    "{nibble} {case:?}"
                );
                // The high bits change nothing.
                assert_eq!(digit(nibble | 0xf0, case), digit(nibble, case));
            }
            let want = format!("{nibble:x}");
            assert_eq!(digit(nibble, Case::Lower), want.as_bytes()[0]);
            let want = format!("{nibble:X}");
            assert_eq!(digit(nibble, Case::Upper), want.as_bytes()[0]);
        }
    }

    #[test]
    fn only_hex_digits_have_a_value() {
        for b in 0..=u8::MAX {
            let want = char::from(b).to_digit(16).map(|d| d as u8);
            assert_eq!(value(b), want, "{b}");
        }
    }
}
