//! Routes the proxy's callbacks, which name contexts by number, to filters.
//!
//! A module holds one [`Filter`] per root context (one per plugin
//! configuration sharing the VM) and knows, for every live request, which
//! root it belongs to and which slot of that root's filter holds it. This
//! is all plain Rust over a [`Host`]: the wasm exports that
//! [`export_plugin!`](crate::export_plugin) defines only unpack their
//! arguments and call in here, and native tests drive it over the
//! [`FakeHost`](crate::fake::FakeHost).
//!
//! Costs: one lookup in an open-addressing table per stream callback, no
//! allocation once the table has grown to the number of concurrent
//! requests, and no boxed context per request.

use crate::abi::{FilterStatus, NO_PARENT};
use crate::engine::{Action, Filter};
use crate::host::Host;
use crate::plugin::{BodyMode, Plugin};
use crate::StreamId;

/// The ABI's header and body status for "go on".
const CONTINUE: u32 = FilterStatus::Continue.code();

fn code(action: Action) -> u32 {
    match action {
        Action::Continue => FilterStatus::Continue,
        Action::Pause => FilterStatus::StopIteration,
    }
    .code()
}

struct Root<P: Plugin, H: Host> {
    context_id: u32,
    filter: Filter<P, H>,
}

/// The filters of one module and the requests in flight on them.
pub struct Dispatcher<P: Plugin, H: Host> {
    roots: Vec<Root<P, H>>,
    streams: Contexts,
}

impl<P: Plugin, H: Host> core::fmt::Debug for Dispatcher<P, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("plugin", &P::NAME)
            .field("roots", &self.roots.len())
            .field("requests", &self.streams.len)
            .finish()
    }
}

impl<P: Plugin, H: Host> Default for Dispatcher<P, H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin, H: Host> Dispatcher<P, H> {
    /// An empty module: no root context yet.
    pub const fn new() -> Self {
        Dispatcher {
            roots: Vec::new(),
            streams: Contexts::new(),
        }
    }

    /// A context was created: a root context (`parent_id` 0) gets a filter
    /// over the host `host` makes, a request gets a slot in its root's
    /// filter. A request whose root is unknown is ignored: every later
    /// callback for it lets the stream go on.
    pub fn on_context_create(&mut self, context_id: u32, parent_id: u32, host: impl FnOnce() -> H) {
        if parent_id == NO_PARENT {
            self.roots.push(Root {
                context_id,
                filter: Filter::new(host()),
            });
            return;
        }
        if let Some(root) = self.root(parent_id) {
            let stream = root.open_stream(context_id);
            self.streams.insert(Entry {
                context_id,
                root_id: parent_id,
                stream,
            });
        }
    }

    /// The filter of root context `root_id`.
    pub fn root(&mut self, root_id: u32) -> Option<&mut Filter<P, H>> {
        self.roots
            .iter_mut()
            .find(|r| r.context_id == root_id)
            .map(|r| &mut r.filter)
    }

    /// Configures root `root_id` with `bytes`; false refuses the
    /// configuration (the reason is logged by the filter).
    pub fn on_configure(&mut self, root_id: u32, bytes: Vec<u8>) -> bool {
        self.root(root_id)
            .is_some_and(|filter| filter.configure(bytes).is_ok())
    }

    /// The tick of root `root_id`.
    pub fn on_tick(&mut self, root_id: u32) {
        if let Some(filter) = self.root(root_id) {
            filter.on_tick();
        }
    }

    /// A context is gone: a request's plugin hears of its end (with
    /// [`Plugin::STREAM_END`]) and its slot is
    /// freed (the root adopts its Redis calls in flight; late HTTP replies
    /// are dropped); a root publishes its counts and is dropped. Envoy
    /// calls `proxy_on_delete` for every request however it ended (after
    /// `proxy_on_done`), with the request's context current.
    pub fn on_delete(&mut self, context_id: u32) {
        if let Some(entry) = self.streams.remove(context_id) {
            if let Some(filter) = self.root(entry.root_id) {
                filter.close_stream(entry.stream);
            }
            return;
        }
        if let Some(index) = self.roots.iter().position(|r| r.context_id == context_id) {
            let mut root = self.roots.swap_remove(index);
            root.filter.flush_counters();
        }
    }

    fn stream(
        &mut self,
        context_id: u32,
        callback: impl FnOnce(&mut Filter<P, H>, StreamId) -> Action,
    ) -> u32 {
        let Some(entry) = self.streams.get(context_id) else {
            return CONTINUE;
        };
        match self.root(entry.root_id) {
            Some(filter) => code(callback(filter, entry.stream)),
            None => CONTINUE,
        }
    }

    /// Request headers; returns the ABI status.
    pub fn on_request_headers(&mut self, context_id: u32, end_of_stream: bool) -> u32 {
        self.stream(context_id, |f, id| f.on_request_headers(id, end_of_stream))
    }

    /// Response headers; returns the ABI status.
    pub fn on_response_headers(&mut self, context_id: u32, end_of_stream: bool) -> u32 {
        self.stream(context_id, |f, id| f.on_response_headers(id, end_of_stream))
    }

    /// A request body chunk (`size` is all buffered so far).
    pub fn on_request_body(&mut self, context_id: u32, size: usize, end_of_stream: bool) -> u32 {
        if P::REQUEST_BODY == BodyMode::Ignore {
            return CONTINUE;
        }
        self.stream(context_id, |f, id| {
            f.on_request_body(id, size, end_of_stream)
        })
    }

    /// A response body chunk (`size` is all buffered so far).
    pub fn on_response_body(&mut self, context_id: u32, size: usize, end_of_stream: bool) -> u32 {
        if P::RESPONSE_BODY == BodyMode::Ignore {
            return CONTINUE;
        }
        self.stream(context_id, |f, id| {
            f.on_response_body(id, size, end_of_stream)
        })
    }

    /// Request trailers: the end of a request body the plugin reads.
    pub fn on_request_trailers(&mut self, context_id: u32) -> u32 {
        if P::REQUEST_BODY == BodyMode::Ignore {
            return CONTINUE;
        }
        self.stream(context_id, |f, id| f.on_request_trailers(id))
    }

    /// Response trailers: the end of a response body the plugin reads.
    pub fn on_response_trailers(&mut self, context_id: u32) -> u32 {
        if P::RESPONSE_BODY == BodyMode::Ignore {
            return CONTINUE;
        }
        self.stream(context_id, |f, id| f.on_response_trailers(id))
    }

    /// An HTTP call answered. Envoy delivers answers on the root context the
    /// call was made through; the filter then makes the request's context
    /// effective itself. A host that delivers on the request's own context
    /// is served too.
    pub fn on_http_call_response(
        &mut self,
        context_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        if let Some(filter) = self.root(context_id) {
            filter.on_http_call_response(token, num_headers, body_size, true);
        } else if let Some(entry) = self.streams.get(context_id) {
            if let Some(filter) = self.root(entry.root_id) {
                filter.on_http_call_response(token, num_headers, body_size, false);
            }
        }
    }

    /// A Higress Redis call answered (`status` 0) or failed, on root
    /// `root_id`.
    pub fn on_redis_call_response(&mut self, root_id: u32, token: u32, status: u32, size: usize) {
        if let Some(filter) = self.root(root_id) {
            filter.on_redis_call_response(token, status, size);
        }
    }
}

/// A live request: its context, its root and its slot there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    context_id: u32,
    root_id: u32,
    stream: StreamId,
}

/// Live requests by context id: open addressing with linear probing,
/// at most half full. Context id 0 is never a request's, so it marks a
/// free place.
#[derive(Debug)]
struct Contexts {
    places: Vec<Entry>,
    len: usize,
}

impl Contexts {
    const fn new() -> Self {
        Contexts {
            places: Vec::new(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.places.len().wrapping_sub(1)
    }

    /// Where `context_id` would sit with no collision. Ids are handed out
    /// in sequence, so a multiplicative hash spreads them evenly.
    fn home(&self, context_id: u32) -> usize {
        (context_id.wrapping_mul(0x9E37_79B9) as usize) & self.mask()
    }

    /// The place holding `context_id`, or the free place where it belongs.
    fn find(&self, context_id: u32) -> Option<usize> {
        if self.places.is_empty() {
            return None;
        }
        let mut i = self.home(context_id);
        loop {
            let id = self.places.get(i)?.context_id;
            if id == context_id || id == 0 {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    fn get(&self, context_id: u32) -> Option<Entry> {
        let entry = *self.places.get(self.find(context_id)?)?;
        (entry.context_id == context_id && context_id != 0).then_some(entry)
    }

    fn insert(&mut self, entry: Entry) {
        if entry.context_id == 0 {
            return;
        }
        if (self.len + 1) * 2 > self.places.len() {
            self.grow();
        }
        if let Some(i) = self.find(entry.context_id) {
            if let Some(place) = self.places.get_mut(i) {
                if place.context_id == 0 {
                    self.len += 1;
                }
                *place = entry;
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.places.len() * 2).max(16);
        let old = core::mem::replace(&mut self.places, vec![Entry::default(); size]);
        self.len = 0;
        for entry in old.into_iter().filter(|e| e.context_id != 0) {
            self.insert(entry);
        }
    }

    /// Removes `context_id`, moving later entries of its run back so that
    /// every entry stays reachable from its home without tombstones.
    fn remove(&mut self, context_id: u32) -> Option<Entry> {
        let mut hole = self.find(context_id)?;
        let removed = *self.places.get(hole)?;
        if removed.context_id != context_id || context_id == 0 {
            return None;
        }
        let mask = self.mask();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let Some(&entry) = self.places.get(next) else {
                break;
            };
            if entry.context_id == 0 {
                break;
            }
            // The entry may fill the hole unless its home lies cyclically
            // in (hole, next]: then moving it would put it before its home.
            let home = self.home(entry.context_id);
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                if let Some(place) = self.places.get_mut(hole) {
                    *place = entry;
                }
                hole = next;
            }
        }
        if let Some(place) = self.places.get_mut(hole) {
            *place = Entry::default();
        }
        self.len -= 1;
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(context_id: u32) -> Entry {
        Entry {
            context_id,
            root_id: context_id % 3,
            stream: StreamId {
                slot: context_id * 7,
                generation: context_id,
            },
        }
    }

    #[test]
    fn contexts_match_a_std_map_under_random_churn() {
        let mut table = Contexts::new();
        let mut model = std::collections::HashMap::new();
        let mut seed = 0x2545_f491_u64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Small id range: plenty of collisions, runs and wrap-around.
            let id = (seed % 300) as u32 + 1;
            if seed & 0x100 == 0 {
                table.insert(entry(id));
                model.insert(id, entry(id));
            } else {
                assert_eq!(table.remove(id), model.remove(&id));
            }
            assert_eq!(table.len, model.len());
        }
        for id in 0..400 {
            assert_eq!(table.get(id), model.get(&id).copied(), "id {id}");
        }
    }

    #[test]
    fn context_zero_is_never_stored() {
        let mut table = Contexts::new();
        table.insert(entry(0));
        assert_eq!(table.len, 0);
        assert_eq!(table.get(0), None);
        assert_eq!(table.remove(0), None);
    }

    #[test]
    fn table_stops_growing_once_it_fits_the_concurrent_requests() {
        let mut table = Contexts::new();
        for id in 1..=100 {
            table.insert(entry(id));
        }
        let size = table.places.len();
        for round in 1..50u32 {
            for id in 1..=100 {
                table.remove(id + (round - 1) * 100);
                table.insert(entry(id + round * 100));
            }
        }
        assert_eq!(table.places.len(), size);
        assert_eq!(table.len, 100);
    }
}
