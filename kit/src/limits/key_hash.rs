//! `key_hash`: counter keys that name a request value by a keyed hash of
//! it, so that secrets clients send (bearer tokens, API keys, session
//! cookies) never appear in Redis key names.
//!
//! The value in a key becomes the 32 lowercase hex digits of its
//! SipHash-2-4 with a 128-bit output, keyed by `key_hash_secret`. Gateways
//! that share a Redis must share the secret, or they count the same client
//! in different keys. A keyed hash rather than a plain one: without the
//! secret, whoever reads the key names cannot test guesses of a token
//! against them. 128 bits keep two clients from sharing a counter by
//! accident for any number of clients a gateway will see.

use super::siphash::sip24_128;
use crate::config::{ConfigError, Fields};

/// The shortest `key_hash_secret` accepted, in bytes: SipHash's key size.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a missing `key_hash_secret` is refused; its end, from
/// [`TOO_SHORT_AT`], is why a short one is (one copy of the text in the
/// module).
const REQUIRED: &str = "is required when `key_hash` is true, and must be at least 16 bytes (a random string, the same on every gateway)";

/// Where the short-secret reason starts in [`REQUIRED`].
const TOO_SHORT_AT: usize = 41;

/// The length of a hashed value in a key: 128 bits in hex.
pub const HASHED_LEN: usize = 32;

/// The configured key of the hash.
#[derive(Clone)]
pub struct KeyHash {
    /// SipHash's two key words.
    key: (u64, u64),
}

impl core::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The key is a secret: never in a log line.
        f.write_str("KeyHash(..)")
    }
}

impl KeyHash {
    /// The hash keyed by `secret`, of any length: its own SipHash-2-4-128
    /// under the all-zero key gives the 16-byte key, so that every byte
    /// of a long secret counts.
    pub fn new(secret: &[u8]) -> KeyHash {
        KeyHash {
            key: sip24_128(0, 0, secret),
        }
    }

    /// Reads `key_hash` (default false) and, when it is true,
    /// `key_hash_secret`.
    ///
    /// # Errors
    /// `key_hash_secret` missing while `key_hash` is true, shorter than
    /// [`MIN_SECRET_LEN`] bytes, or given while `key_hash` is false (a
    /// secret that hashes nothing would make the keys look protected).
    pub fn parse(fields: &Fields<'_, '_>) -> Result<Option<KeyHash>, ConfigError> {
        let on = fields.bool_or("key_hash", false)?;
        let secret = fields.get("key_hash_secret");
        // Every refusal goes through one `error` call below with a fixed
        // reason: one copy of the error-building code, no formatting.
        let reason = match (on, &secret) {
            (false, None) => return Ok(None),
            (false, Some(_)) => "is set but `key_hash` is not true: nothing would be hashed",
            (true, None) => REQUIRED,
            (true, Some(field)) => {
                let secret = field.str()?;
                if secret.len() >= MIN_SECRET_LEN {
                    return Ok(Some(KeyHash::new(secret.as_bytes())));
                }
                REQUIRED.get(TOO_SHORT_AT..).unwrap_or(REQUIRED)
            }
        };
        Err(match secret {
            Some(field) => field.error(reason),
            None => fields.error("key_hash_secret", reason),
        })
    }

    /// The hex digits that stand for `value` in a counter key.
    ///
    /// # Examples
    /// ```
    /// use kit::limits::key_hash::KeyHash;
    /// let hash = KeyHash::new(b"the same secret on every gateway");
    /// let digits = hash.digits(b"Bearer sk-live-123");
    /// assert_eq!(digits.len(), 32);
    /// assert_eq!(digits, hash.digits(b"Bearer sk-live-123"));
    /// assert_ne!(digits, hash.digits(b"Bearer sk-live-124"));
    /// ```
    pub fn digits(&self, value: &[u8]) -> [u8; HASHED_LEN] {
        let (k0, k1) = self.key;
        let (low, high) = sip24_128(k0, k1, value);
        // The hash's 16 bytes in the reference implementation's order
        // (each word little-endian), each as two hex digits, high first.
        let mut out = [0u8; HASHED_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let word = if i < 16 { low } else { high };
            let shift = (i % 16 / 2 * 8) ^ if i % 2 == 0 { 4 } else { 0 };
            let nibble = (word >> shift) as u8 & 0x0f;
            *slot = nibble + if nibble < 10 { b'0' } else { b'a' - 10 };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphasher::sip128::SipHasher24;

    #[test]
    fn the_digits_are_siphash_2_4_128_under_the_derived_key() {
        // The SipHash paper's 128-bit vector for the empty message under
        // key 00..0f, through the crate, checks the wiring end to end.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let reference = SipHasher24::new_with_key(&key).hash(b"").as_bytes();
        assert_eq!(
            reference,
            [
                0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55,
                0x02, 0x93
            ]
        );
        let hash = KeyHash::new(b"0123456789abcdef");
        let derived = SipHasher24::new().hash(b"0123456789abcdef").as_bytes();
        let want: String = SipHasher24::new_with_key(&derived)
            .hash(b"alice")
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash.digits(b"alice").as_slice(), want.as_bytes());
    }

    #[test]
    fn the_refusals_state_the_minimum_length() {
        let too_short = &REQUIRED[TOO_SHORT_AT..];
        assert!(too_short.starts_with("must be at least 16 bytes ("));
        assert!(too_short.contains(&format!("at least {MIN_SECRET_LEN} bytes")));
    }

    #[test]
    fn every_byte_of_the_secret_counts() {
        let a = KeyHash::new(b"0123456789abcdef-one");
        let b = KeyHash::new(b"0123456789abcdef-two");
        assert_ne!(a.digits(b"v"), b.digits(b"v"));
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let hash = KeyHash::new(b"a very secret key!");
        assert!(!format!("{hash:?}").contains("secret"));
    }
}
