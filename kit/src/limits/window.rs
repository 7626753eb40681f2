//! The fixed-window algorithm, as pure functions of the clock.
//!
//! Windows are aligned to the Unix epoch: a per-minute window starts at a
//! multiple of 60 seconds, so every gateway that shares a Redis agrees on
//! the window without talking to the others.

/// One fixed window of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First second of the window (seconds since the epoch).
    pub start: u64,
    /// First second after the window.
    pub end: u64,
}

impl Window {
    /// The window of length `seconds` (at least 1) that contains `now`.
    pub fn containing(now_secs: u64, seconds: u64) -> Window {
        let seconds = seconds.max(1);
        let start = now_secs - now_secs % seconds;
        Window {
            start,
            end: start.saturating_add(seconds),
        }
    }

    /// Whole seconds until the window ends, at least 1 (what
    /// `X-RateLimit-Reset` reports).
    pub fn reset_after(&self, now_secs: u64) -> u64 {
        self.end.saturating_sub(now_secs).max(1)
    }
}

/// What Redis's count means for the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Under the limit; `remaining` more requests fit in the window.
    Allow {
        /// Requests still allowed in this window.
        remaining: u64,
    },
    /// Over the limit for the rest of the window.
    Reject,
}

/// Decides a request from the window's count after counting it.
pub fn decide(count: i64, limit: u64) -> Decision {
    // A count below 1 cannot come from INCR; treat it as the first request.
    let count = u64::try_from(count).unwrap_or(0).max(1);
    if count <= limit {
        Decision::Allow {
            remaining: limit - count,
        }
    } else {
        Decision::Reject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(
            Window::containing(125, 60),
            Window {
                start: 120,
                end: 180
            }
        );
        assert_eq!(
            Window::containing(120, 60),
            Window {
                start: 120,
                end: 180
            }
        );
        assert_eq!(Window::containing(7, 1), Window { start: 7, end: 8 });
        assert_eq!(
            Window::containing(86_399, 86_400),
            Window {
                start: 0,
                end: 86_400
            }
        );
    }

    #[test]
    fn reset_counts_down_to_one() {
        let w = Window::containing(125, 60);
        assert_eq!(w.reset_after(125), 55);
        assert_eq!(w.reset_after(179), 1);
    }

    #[test]
    fn decisions_at_the_limit() {
        assert_eq!(decide(1, 10), Decision::Allow { remaining: 9 });
        assert_eq!(decide(10, 10), Decision::Allow { remaining: 0 });
        assert_eq!(decide(11, 10), Decision::Reject);
        assert_eq!(decide(-3, 10), Decision::Allow { remaining: 9 });
    }
}
