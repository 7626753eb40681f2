//! A kit [`Plugin`] hosted in the standard `proxy-wasm` crate's dispatcher
//! (feature `proxy-wasm`, wasm builds).
//!
//! [`SdkRoot`] is the SDK `RootContext` of one plugin configuration: it owns
//! the kit's [`Filter`] over an [`SdkHost`], and each request gets an
//! [`SdkStream`], the SDK `HttpContext` that forwards the request's
//! callbacks to its slot in that filter. With the feature on,
//! [`export_plugin!`](crate::export_plugin) installs [`SdkRoot`] with
//! `proxy_wasm::set_root_context` instead of defining the kit's own
//! exports; the plugin's source does not change.
//!
//! What the SDK's dispatcher costs per request, on top of [`SdkHost`]'s
//! host calls: a boxed `HttpContext` and a hash-map entry per request, and
//! a VM entry for every callback the SDK exports (all of them), not only
//! those the plugin needs.
//!
//! HTTP calls: the SDK files each call under the context whose callback
//! sent it and delivers the answer to that context only, dropping it once
//! the context is deleted, where Envoy owns every call of a module on its
//! root context. A call can outlive the request whose callback sent it (a
//! shared count sent for other waiting requests, a count the request's
//! end still charges), so the adapter has the SDK file every call under
//! the root (see `raw::sdk`): answers come to [`SdkRoot`], and the
//! engine hands each to the request or root handler that owns it, as on
//! the kit's own backend.

use crate::engine::{Action, Filter};
use crate::plugin::{BodyMode, Plugin};
use crate::sdk_host::{configuration, SdkHost};
use crate::StreamId;
use core::cell::RefCell;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as SdkAction, ContextType};
use std::rc::Rc;

/// The filter of one root, shared by the root and its requests.
type Shared<P> = Rc<RefCell<Filter<P, SdkHost>>>;

fn action(action: Action) -> SdkAction {
    match action {
        Action::Continue => SdkAction::Continue,
        Action::Pause => SdkAction::Pause,
    }
}

/// Runs `f` on the filter; a callback that arrives while another one runs
/// lets the stream go on, as on the kit's own backend.
fn with<P: Plugin, R>(
    filter: &Shared<P>,
    otherwise: R,
    f: impl FnOnce(&mut Filter<P, SdkHost>) -> R,
) -> R {
    match filter.try_borrow_mut() {
        Ok(mut filter) => f(&mut filter),
        Err(_) => otherwise,
    }
}

/// The SDK root context of a kit plugin `P`.
pub struct SdkRoot<P: Plugin> {
    filter: Shared<P>,
}

impl<P: Plugin> core::fmt::Debug for SdkRoot<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SdkRoot").field("plugin", &P::NAME).finish()
    }
}

impl<P: Plugin + 'static> SdkRoot<P> {
    /// The root context `context_id`, with an unconfigured filter.
    pub fn new(context_id: u32) -> Self {
        let mut host = SdkHost::default();
        host.set_root(context_id);
        SdkRoot {
            filter: Rc::new(RefCell::new(Filter::new(host))),
        }
    }

    /// The SDK's root-context constructor for `P`, for
    /// `proxy_wasm::set_root_context`.
    pub fn boxed(context_id: u32) -> Box<dyn RootContext> {
        Box::new(Self::new(context_id))
    }
}

/// The SDK drops the root when the proxy deletes it: its counts are
/// published, and requests still open send their calls as their own.
impl<P: Plugin> Drop for SdkRoot<P> {
    fn drop(&mut self) {
        with(&self.filter, (), |f| {
            f.host_mut().set_root(0);
            f.flush_counters();
        });
    }
}

impl<P: Plugin + 'static> Context for SdkRoot<P> {
    /// Every call the filter sends is filed under the root, so every answer
    /// arrives here; the engine makes the owner's context effective.
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        with(&self.filter, (), |f| {
            f.host_mut().enter_root();
            f.on_http_call_response(token, headers, body_size, true);
        });
    }
}

impl<P: Plugin + 'static> RootContext for SdkRoot<P> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = configuration();
        with(&self.filter, false, |f| {
            f.host_mut().enter_root();
            f.configure(bytes).is_ok()
        })
    }

    fn on_tick(&mut self) {
        with(&self.filter, (), |f| {
            f.host_mut().enter_root();
            f.on_tick();
        });
    }

    /// Entered by the adapter itself (`raw::sdk::file_calls_under`) so that
    /// the SDK files the calls of a request's callback under this root; no
    /// queue is ever registered, so there is nothing to read.
    fn on_queue_ready(&mut self, _queue_id: u32) {}

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stream = with(&self.filter, None, |f| Some(f.open_stream(context_id)))?;
        Some(Box::new(SdkStream {
            filter: Rc::clone(&self.filter),
            stream,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The SDK HTTP context of one request of a kit plugin `P`.
pub struct SdkStream<P: Plugin> {
    filter: Shared<P>,
    stream: StreamId,
}

impl<P: Plugin> core::fmt::Debug for SdkStream<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SdkStream")
            .field("plugin", &P::NAME)
            .field("stream", &self.stream)
            .finish()
    }
}

impl<P: Plugin> SdkStream<P> {
    fn run(&self, f: impl FnOnce(&mut Filter<P, SdkHost>, StreamId) -> Action) -> SdkAction {
        action(with(&self.filter, Action::Continue, |filter| {
            filter.host_mut().enter_stream();
            f(filter, self.stream)
        }))
    }
}

/// The SDK drops a request's context when the proxy deletes it: the
/// plugin hears of the end and the slot is freed, as on the kit's own
/// backend. Calls still in flight are the root's and are answered there.
impl<P: Plugin> Drop for SdkStream<P> {
    fn drop(&mut self) {
        let stream = self.stream;
        with(&self.filter, (), |f| {
            f.host_mut().enter_stream();
            f.close_stream(stream);
        });
    }
}

impl<P: Plugin> Context for SdkStream<P> {
    /// Only a call sent after the SDK deleted the root comes here (see the
    /// module's documentation); the engine switches to its owner.
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        with(&self.filter, (), |f| {
            f.host_mut().enter_stream();
            f.on_http_call_response(token, headers, body_size, true);
        });
    }
}

impl<P: Plugin> HttpContext for SdkStream<P> {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> SdkAction {
        self.run(|f, id| f.on_request_headers(id, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> SdkAction {
        self.run(|f, id| f.on_response_headers(id, end_of_stream))
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> SdkAction {
        if P::REQUEST_BODY == BodyMode::Ignore {
            return SdkAction::Continue;
        }
        self.run(|f, id| f.on_request_body(id, size, end_of_stream))
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> SdkAction {
        if P::RESPONSE_BODY == BodyMode::Ignore {
            return SdkAction::Continue;
        }
        self.run(|f, id| f.on_response_body(id, size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _: usize) -> SdkAction {
        if P::REQUEST_BODY == BodyMode::Ignore {
            return SdkAction::Continue;
        }
        self.run(Filter::on_request_trailers)
    }

    fn on_http_response_trailers(&mut self, _: usize) -> SdkAction {
        if P::RESPONSE_BODY == BodyMode::Ignore {
            return SdkAction::Continue;
        }
        self.run(Filter::on_response_trailers)
    }
}

/// Installs plugin `P` as the module's root context in the SDK's
/// dispatcher; [`export_plugin!`](crate::export_plugin) calls it from the
/// module's `_initialize`.
pub fn install<P: Plugin + 'static>() {
    proxy_wasm::set_root_context(SdkRoot::<P>::boxed);
}
