//! A streamed body chunk longer than `STREAM_PIECE` reaches the handler in
//! pieces, as if the proxy had delivered it so: only the last piece is told
//! the stream ended. A handler that rewrites its pieces can replace only
//! the first (the proxy replaces bytes at the front of what it holds, as
//! Envoy does); its later pieces, and new bytes after held ones, are left
//! as they are and `rewrite_body` says so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::engine::STREAM_PIECE;
use kit::fake::FakeHost;
use kit::{Action, BodyMode, ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, Setup};
use std::cell::RefCell;

thread_local! {
    /// Each piece the handler got: its length, whether it ended the stream,
    /// and whether its rewrite was made.
    static PIECES: RefCell<Vec<(usize, bool, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Upper-cases each piece of the response and marks its end with `|`;
/// holds the answer until it ends.
struct Marks;

impl Plugin for Marks {
    const NAME: &'static str = "marks";
    const RESPONSE_BODY: BodyMode = BodyMode::Stream;
    const REWRITES_BODY: bool = true;
    type Config<'cfg> = ();
    type State = ();

    fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn on_response_body<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        body: &[u8],
        end_of_stream: bool,
    ) -> Flow {
        let rewritten = cx.io.rewrite_body(|out| {
            out.extend(body.iter().map(u8::to_ascii_uppercase));
            out.push(b'|');
            true
        });
        PIECES.with(|p| p.borrow_mut().push((body.len(), end_of_stream, rewritten)));
        if end_of_stream {
            Flow::Continue
        } else {
            Flow::Pause
        }
    }
}

fn pieces() -> Vec<(usize, bool, bool)> {
    PIECES.with(|p| p.take())
}

#[test]
fn a_long_chunk_reaches_the_handler_in_pieces_and_only_the_first_is_rewritten() {
    let mut f: Filter<Marks, FakeHost> = Filter::new(FakeHost::new());
    f.configure(b"{}".to_vec()).unwrap();
    let s = f.open_stream(2);
    assert_eq!(f.on_request_headers(s, true), Action::Continue);
    assert_eq!(f.on_response_headers(s, false), Action::Continue);
    let first = STREAM_PIECE + 3_616;
    f.host_mut().response_body = vec![b'a'; first];
    assert_eq!(
        f.on_response_body(s, first, false),
        Action::Pause,
        "the last piece held the bytes"
    );
    assert_eq!(
        pieces(),
        [(STREAM_PIECE, false, true), (3_616, false, false)]
    );
    // The proxy appends the next bytes to the held ones.
    f.host_mut().response_body.extend_from_slice(b"bbbbb");
    let size = f.host().response_body.len();
    assert_eq!(f.on_response_body(s, size, true), Action::Continue);
    assert_eq!(pieces(), [(5, true, false)], "only the new bytes, once");
    let mut expected = vec![b'A'; STREAM_PIECE];
    expected.push(b'|');
    expected.extend_from_slice(&[b'a'; 3_616]);
    expected.extend_from_slice(b"bbbbb");
    assert_eq!(f.host().response_body, expected);
}

#[test]
fn a_chunk_of_several_pieces_tells_only_the_last_one_the_stream_ended() {
    let mut f: Filter<Marks, FakeHost> = Filter::new(FakeHost::new());
    f.configure(b"{}".to_vec()).unwrap();
    let s = f.open_stream(2);
    assert_eq!(f.on_request_headers(s, true), Action::Continue);
    assert_eq!(f.on_response_headers(s, false), Action::Continue);
    let len = 2 * STREAM_PIECE + 1;
    f.host_mut().response_body = vec![b'z'; len];
    assert_eq!(f.on_response_body(s, len, true), Action::Continue);
    assert_eq!(
        pieces(),
        [
            (STREAM_PIECE, false, true),
            (STREAM_PIECE, false, false),
            (1, true, false)
        ]
    );
    assert_eq!(f.host().response_body.len(), len + 1);
    assert_eq!(
        f.host()
            .response_body
            .iter()
            .filter(|&&b| b == b'|')
            .count(),
        1
    );
}
