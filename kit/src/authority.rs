//! The request's authority as domain rules compare it: without its port,
//! in ASCII lowercase, both done a word (8 bytes) at a time, since they run
//! on every request that a domain rule is tried on.

/// `bytes` in ASCII lowercase, eight at a time.
///
/// `make_ascii_lowercase` goes byte by byte for an authority too short for
/// the compiler's vector loop (under 16 bytes), which most are; a word at
/// a time does eight bytes for about the cost of one. A tail shorter than
/// a word is done as the last 8 bytes again (lowercasing twice changes
/// nothing).
pub(crate) fn lowercase_ascii(bytes: &mut [u8]) {
    if bytes.len() < 8 {
        bytes.make_ascii_lowercase();
        return;
    }
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        lowercase_word(word);
    }
    if !words.into_remainder().is_empty() {
        let tail = bytes.len() - 8;
        if let Some(last) = bytes.get_mut(tail..) {
            lowercase_word(last);
        }
    }
}

/// Lowercases the ASCII letters of 8 bytes; other bytes, non-ASCII
/// included, are left as they are.
fn lowercase_word(word: &mut [u8]) {
    const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    let w = u64::from_le_bytes(bytes);
    // Per byte, on its low 7 bits (so no sum carries into the next byte):
    // the high bit of `at_least_a` is set from `A` up, that of `past_z`
    // from `[` up; a letter is the first without the second, in a byte
    // whose own high bit is clear.
    let low = w & LOW_BITS;
    let at_least_a = low + (0x80 - u64::from(b'A')) * 0x0101_0101_0101_0101;
    let past_z = low + (0x80 - u64::from(b'Z') - 1) * 0x0101_0101_0101_0101;
    let upper = at_least_a & !past_z & !w & HIGH_BITS;
    // 0x80 >> 2 is 0x20, the ASCII case bit.
    word.copy_from_slice(&(w | upper >> 2).to_le_bytes());
}

/// `authority` without its `:port`; `[v6]:port` keeps its brackets.
pub(crate) fn strip_port(authority: &[u8]) -> &[u8] {
    // `[v6]:port` keeps its brackets; `host:port` loses the port.
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    if !has_colon(authority) {
        return authority;
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => authority.get(..colon).unwrap_or(authority),
        None => authority,
    }
}

/// Whether `bytes` hold a `:`, looked for eight bytes at a time.
///
/// Most authorities carry no port, so the common answer is "no", found a
/// word at a time for about the cost of one byte; only an authority with
/// a colon is scanned again for the last one. A tail shorter than a word
/// is looked at as the last 8 bytes.
fn has_colon(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.contains(&b':');
    }
    let mut words = bytes.chunks_exact(8);
    let mut found = false;
    for word in &mut words {
        found |= word_has_colon(word);
    }
    let tail = bytes.len() - 8;
    if !words.remainder().is_empty() {
        found |= bytes.get(tail..).is_some_and(word_has_colon);
    }
    found
}

/// Whether 8 bytes hold a `:`: the bytes XOR `:` have a zero byte. The
/// borrow of the subtraction only runs up from a zero byte, so the test
/// (unlike the mask it computes) is exact.
fn word_has_colon(word: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    let x = u64::from_le_bytes(bytes) ^ (u64::from(b':') * ONES);
    x.wrapping_sub(ONES) & !x & HIGH_BITS != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lowercase_as_bytes_do() {
        // Every byte value at every position of every length up to 40,
        // against the standard per-byte lowercasing.
        for len in 0..40usize {
            for b in 0..=255u8 {
                for at in 0..len {
                    let mut text: Vec<u8> = (0..len).map(|i| b"aZ.-9Q@[`{"[i % 10]).collect();
                    text[at] = b;
                    let mut ours = text.clone();
                    lowercase_ascii(&mut ours);
                    text.make_ascii_lowercase();
                    assert_eq!(ours, text, "length {len}, byte {b} at {at}");
                }
            }
        }
    }

    #[test]
    fn ports_are_stripped_as_a_byte_scan_strips_them() {
        // Every byte value at every position of every length up to 40,
        // against the last colon found byte by byte.
        fn by_bytes(authority: &[u8]) -> &[u8] {
            if authority.first() == Some(&b'[') {
                return match authority.iter().position(|&b| b == b']') {
                    Some(end) => &authority[..=end],
                    None => authority,
                };
            }
            match authority.iter().rposition(|&b| b == b':') {
                Some(colon) => &authority[..colon],
                None => authority,
            }
        }
        for len in 0..40usize {
            for b in 0..=255u8 {
                for at in 0..len {
                    let mut text: Vec<u8> = (0..len).map(|i| b"a.9-Z;9\x80"[i % 8]).collect();
                    text[at] = b;
                    assert_eq!(
                        strip_port(&text),
                        by_bytes(&text),
                        "length {len}, byte {b} at {at}"
                    );
                    // And with a port after it.
                    text.extend_from_slice(b":8443");
                    assert_eq!(
                        strip_port(&text),
                        by_bytes(&text),
                        "length {len}+port, byte {b} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn authority_loses_its_port_but_not_ipv6_brackets() {
        assert_eq!(strip_port(b"example.com:8080"), b"example.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"example.com"), b"example.com");
    }
}
