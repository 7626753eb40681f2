//! How a request ended: what the kit saw of it ([`StreamEnd`]) and, when it
//! ended early, why ([`EndCause`], from the proxy's response flags).
//!
//! The kit learns of a request's end from `proxy_on_delete`, which every
//! module exports anyway: Envoy calls it when the stream's filters are
//! destroyed, whether the answer completed, the client went away, the
//! upstream reset or a filter answered locally (Envoy's `Context::onDestroy`
//! calls `proxy_on_done`, then `proxy_on_delete`). So a plugin that wants to
//! act at the end ([`Plugin::on_stream_end`](crate::Plugin::on_stream_end))
//! costs no further VM entry per request. The stream's properties are still
//! readable then; its headers and bodies may not be.

/// What the kit saw of a request that is ending; given to
/// [`Plugin::on_stream_end`](crate::Plugin::on_stream_end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// The response headers reached the plugin.
    pub response_started: bool,
    /// The end of the response reached the plugin (its headers or a body
    /// chunk with `end_of_stream`, or its trailers). False when the
    /// request ended before its answer did: the client went away, the
    /// upstream reset or timed out, or the stream was reset by the proxy.
    pub response_complete: bool,
}

/// Why a request ended before its answer did, from Envoy's response flags
/// (`%RESPONSE_FLAGS%` of the access log), read with
/// [`Io::end_cause`](crate::Io::end_cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// The client closed its connection (`DC`) or reset the stream (`DR`).
    ClientGone,
    /// The upstream reset the stream or its connection (`UR`, `UC`, `UF`,
    /// `UPE`), or the proxy reset it locally (`LR`).
    UpstreamReset,
    /// A timeout ended it: the route's (`UT`), the stream idle timeout
    /// (`SI`), a maximum duration (`DT`, `UMSDR`).
    Timeout,
    /// Flags were set, none of the above (for example a filter answered).
    Other,
    /// No flags: nothing the proxy counts as abnormal, or a proxy without
    /// the property.
    Unknown,
}

/// Envoy's legacy response-flag bits (`StreamInfo::legacyResponseFlags`,
/// which is what the `response.flags` property holds): bit `n` is core
/// flag number `n`.
mod flag {
    pub(super) const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2;
    pub(super) const LOCAL_RESET: u64 = 1 << 3;
    pub(super) const UPSTREAM_REMOTE_RESET: u64 = 1 << 4;
    pub(super) const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5;
    pub(super) const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6;
    pub(super) const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14;
    pub(super) const STREAM_IDLE_TIMEOUT: u64 = 1 << 16;
    pub(super) const UPSTREAM_MAX_STREAM_DURATION: u64 = 1 << 19;
    pub(super) const DURATION_TIMEOUT: u64 = 1 << 22;
    pub(super) const UPSTREAM_PROTOCOL_ERROR: u64 = 1 << 23;
    pub(super) const DOWNSTREAM_REMOTE_RESET: u64 = 1 << 28;
}

impl EndCause {
    /// The cause the response flags `flags` say; a client that left wins
    /// over what the proxy did about it (a client reset also resets the
    /// upstream request).
    ///
    /// # Examples
    /// ```
    /// use kit::EndCause;
    /// assert_eq!(EndCause::from_response_flags(0x4000), EndCause::ClientGone);
    /// assert_eq!(EndCause::from_response_flags(0x10), EndCause::UpstreamReset);
    /// assert_eq!(EndCause::from_response_flags(0), EndCause::Unknown);
    /// ```
    pub fn from_response_flags(flags: u64) -> EndCause {
        use flag::*;
        if flags == 0 {
            EndCause::Unknown
        } else if flags & (DOWNSTREAM_CONNECTION_TERMINATION | DOWNSTREAM_REMOTE_RESET) != 0 {
            EndCause::ClientGone
        } else if flags
            & (UPSTREAM_REQUEST_TIMEOUT
                | STREAM_IDLE_TIMEOUT
                | UPSTREAM_MAX_STREAM_DURATION
                | DURATION_TIMEOUT)
            != 0
        {
            EndCause::Timeout
        } else if flags
            & (UPSTREAM_REMOTE_RESET
                | UPSTREAM_CONNECTION_FAILURE
                | UPSTREAM_CONNECTION_TERMINATION
                | UPSTREAM_PROTOCOL_ERROR
                | LOCAL_RESET)
            != 0
        {
            EndCause::UpstreamReset
        } else {
            EndCause::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_family_maps_to_its_cause() {
        assert_eq!(EndCause::from_response_flags(1 << 28), EndCause::ClientGone);
        assert_eq!(
            EndCause::from_response_flags((1 << 14) | (1 << 4)),
            EndCause::ClientGone
        );
        assert_eq!(
            EndCause::from_response_flags(1 << 6),
            EndCause::UpstreamReset
        );
        assert_eq!(
            EndCause::from_response_flags(1 << 3),
            EndCause::UpstreamReset
        );
        assert_eq!(EndCause::from_response_flags(1 << 2), EndCause::Timeout);
        assert_eq!(EndCause::from_response_flags(1 << 16), EndCause::Timeout);
        assert_eq!(EndCause::from_response_flags(1 << 11), EndCause::Other);
        assert_eq!(EndCause::from_response_flags(0), EndCause::Unknown);
    }
}
