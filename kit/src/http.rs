//! Outgoing HTTP calls (`dispatch_http_call`) and their answers.

use crate::host::HostError;
use core::fmt;
use core::time::Duration;

/// A request to send to an upstream cluster with [`Io::http_call`].
///
/// [`Io::http_call`]: crate::Io::http_call
#[derive(Clone, Copy, Debug)]
pub struct HttpRequest<'a> {
    /// Envoy cluster to send to.
    pub cluster: &'a str,
    /// `:method`
    pub method: &'a str,
    /// `:path`, with the query string.
    pub path: &'a str,
    /// `:authority`
    pub authority: &'a str,
    /// Further headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// Body, if any.
    pub body: Option<&'a [u8]>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// The answer to an HTTP call.
///
/// Its headers can be read with [`Io::http_reply_header`] while the reply
/// handler runs.
///
/// [`Io::http_reply_header`]: crate::Io::http_reply_header
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpReply<'a> {
    /// `:status` of the answer.
    pub status: u16,
    /// The whole body.
    pub body: &'a [u8],
}

/// Why an HTTP call got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused to send it (for example: no such cluster).
    Refused(HostError),
    /// The call failed without an answer: connection failure, reset or
    /// timeout (Envoy reports these alike).
    Failed,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Refused(e) => write!(f, "http call refused: {e}"),
            HttpError::Failed => f.write_str("http call failed: no answer (reset or timeout)"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Reads a decimal `:status` value; anything else is `None`.
pub(crate) fn parse_status(value: &[u8]) -> Option<u16> {
    if value.is_empty() || value.len() > 3 {
        return None;
    }
    value.iter().try_fold(0u16, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u16::from(b - b'0'))
    })
}
