//! What an answer cut short before it reported any usage is charged.
//!
//! A client that hangs up (or an upstream that resets) before the usage
//! event would otherwise be served for free. Such an answer is charged an
//! estimate computed from the bytes that passed: the request body as the
//! upstream received it and the response body up to the cut, at
//! `estimate_bytes_per_token` bytes a token, rounded up, at least one
//! token. The default, 4 bytes a token, is the usual rule of thumb for
//! English text; JSON and event-stream framing make the estimate higher
//! than the usage the upstream would have reported, never lower, which is
//! the safe side for a quota.
//!
//! `on_missing_usage: "none"` charges nothing instead (the answer is still
//! counted in `usage_missing`).

use kit::{ConfigError, Fields};

/// Default `estimate_bytes_per_token`.
pub const DEFAULT_BYTES_PER_TOKEN: u64 = 4;

/// What to charge for an answer cut before it reported usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissingUsage {
    /// Charge the estimate (the default).
    Estimate,
    /// Charge nothing.
    Nothing,
}

/// The estimate rule of one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// `on_missing_usage`.
    pub on_missing_usage: OnMissingUsage,
    /// `estimate_bytes_per_token`.
    pub bytes_per_token: u64,
}

impl Default for Estimate {
    fn default() -> Self {
        Estimate {
            on_missing_usage: OnMissingUsage::Estimate,
            bytes_per_token: DEFAULT_BYTES_PER_TOKEN,
        }
    }
}

impl Estimate {
    /// Reads `on_missing_usage` (`"estimate"` or `"none"`) and
    /// `estimate_bytes_per_token` (a positive integer).
    ///
    /// # Errors
    /// Names the field: an unknown `on_missing_usage`, or
    /// `estimate_bytes_per_token` zero or not an integer.
    pub fn parse(fields: &Fields<'_, '_>) -> Result<Estimate, ConfigError> {
        let on_missing_usage = match fields.opt_str("on_missing_usage")? {
            None | Some("estimate") => OnMissingUsage::Estimate,
            Some("none") => OnMissingUsage::Nothing,
            Some(other) => {
                return Err(fields.error(
                    "on_missing_usage",
                    format!("must be \"estimate\" or \"none\", got \"{other}\""),
                ))
            }
        };
        let bytes_per_token = fields.u64_or("estimate_bytes_per_token", DEFAULT_BYTES_PER_TOKEN)?;
        if bytes_per_token == 0 {
            return Err(fields.error("estimate_bytes_per_token", "must be at least 1"));
        }
        Ok(Estimate {
            on_missing_usage,
            bytes_per_token,
        })
    }

    /// The tokens to charge for an answer cut before any usage, after
    /// `request_bytes` of request body and `response_bytes` of response
    /// body passed; `None` with `on_missing_usage: "none"`.
    ///
    /// # Examples
    /// ```
    /// use token_quota::estimate::Estimate;
    /// let rule = Estimate::default();
    /// assert_eq!(rule.tokens(100, 301), Some(101)); // 401 bytes / 4, rounded up
    /// assert_eq!(rule.tokens(0, 0), Some(1));
    /// ```
    #[must_use]
    pub fn tokens(&self, request_bytes: u64, response_bytes: u64) -> Option<u64> {
        match self.on_missing_usage {
            OnMissingUsage::Nothing => None,
            OnMissingUsage::Estimate => {
                let bytes = request_bytes.saturating_add(response_bytes);
                Some(bytes.div_ceil(self.bytes_per_token).max(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_up_to_whole_tokens() {
        let rule = Estimate {
            on_missing_usage: OnMissingUsage::Estimate,
            bytes_per_token: 3,
        };
        assert_eq!(rule.tokens(3, 3), Some(2));
        assert_eq!(rule.tokens(3, 4), Some(3));
        assert_eq!(rule.tokens(u64::MAX, 1), Some(u64::MAX.div_ceil(3)));
        let none = Estimate {
            on_missing_usage: OnMissingUsage::Nothing,
            ..rule
        };
        assert_eq!(none.tokens(100, 100), None);
    }
}
