//! The numbers of the proxy-wasm ABI (0.2.1 and Higress's 0.2.100) and the
//! header-pairs encoding both directions of the boundary use.

/// Result codes a host call returns to the guest.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    pub const UNIMPLEMENTED: i32 = 12;
}

/// Header map types of `proxy_*_header_map_*`.
pub mod map {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// Buffer types of `proxy_get_buffer_bytes` and friends.
pub mod buffer {
    pub const REQUEST_BODY: i32 = 0;
    pub const RESPONSE_BODY: i32 = 1;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
    /// Higress: the reply of a Redis call, readable only inside
    /// `proxy_on_redis_call_response`.
    pub const REDIS_CALL_RESPONSE: i32 = 9;
}

/// Stream types of `proxy_continue_stream` / `proxy_close_stream`.
pub mod stream {
    pub const REQUEST: i32 = 0;
    pub const RESPONSE: i32 = 1;
}

/// What a header or body callback returns.
pub mod action {
    pub const CONTINUE: i32 = 0;
    pub const STOP_ITERATION: i32 = 1;
    pub const CONTINUE_AND_END_STREAM: i32 = 2;
    pub const STOP_ALL_ITERATION_AND_BUFFER: i32 = 3;
    pub const STOP_ALL_ITERATION_AND_WATERMARK: i32 = 4;
}

/// Metric kinds of `proxy_define_metric`.
pub mod metric {
    pub const COUNTER: i32 = 0;
    pub const GAUGE: i32 = 1;
    pub const HISTOGRAM: i32 = 2;
}

/// The ABI version a module declares by exporting a marker function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_2_0`: handled as 0.2.1.
    V0_2_0,
    /// `proxy_abi_version_0_2_1`: what upstream Envoy and Higress both load.
    V0_2_1,
    /// `proxy_abi_version_0_2_100`: Higress's own marker (its Go SDK).
    V0_2_100,
}

impl AbiVersion {
    /// The marker export that declares this version.
    pub fn marker(self) -> &'static str {
        match self {
            AbiVersion::V0_2_0 => "proxy_abi_version_0_2_0",
            AbiVersion::V0_2_1 => "proxy_abi_version_0_2_1",
            AbiVersion::V0_2_100 => "proxy_abi_version_0_2_100",
        }
    }

    /// Whether Higress honours `StopIteration` (1) from a header callback.
    /// It does for `0_2_100` modules only; for the others it treats 1 the
    /// way Envoy does without `allow_on_headers_stop_iteration`: as
    /// `StopAllIterationAndWatermark`, so the body waits with the headers.
    pub fn honours_header_stop_iteration(self) -> bool {
        self == AbiVersion::V0_2_100
    }
}

/// Encodes header pairs the way the ABI hands them over: a u32 count, then a
/// u32 key length and a u32 value length per pair, then each key and value
/// followed by a NUL byte. All integers little-endian.
pub fn encode_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Decodes the encoding of [`encode_pairs`].
///
/// # Errors
/// `None` when the bytes are shorter than the lengths they announce.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let count = word(0)?;
    let mut lengths = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        lengths.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(lengths.len());
    for (kl, vl) in lengths {
        let key = bytes.get(at..at + kl)?.to_vec();
        at += kl + 1;
        let value = bytes.get(at..at + vl)?.to_vec();
        at += vl + 1;
        pairs.push((key, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_including_empty_values() {
        let pairs = vec![
            (b":path".to_vec(), b"/v1".to_vec()),
            (b"x-empty".to_vec(), Vec::new()),
        ];
        let bytes = encode_pairs(&pairs);
        assert_eq!(bytes.len(), 4 + 2 * 8 + 6 + 4 + 8 + 1);
        assert_eq!(decode_pairs(&bytes), Some(pairs));
    }

    #[test]
    fn truncated_pairs_are_refused() {
        let bytes = encode_pairs(&[(b"k".to_vec(), b"value".to_vec())]);
        assert_eq!(decode_pairs(&bytes[..bytes.len() - 3]), None);
        assert_eq!(decode_pairs(&[1, 0]), None);
    }
}
