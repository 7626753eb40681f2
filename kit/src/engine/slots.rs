//! The pool of per-request state: one [`Slot`] for each live request.
//!
//! A slot freed when its request ends is reused by the next one, so the
//! pool grows to the most requests a worker ever holds at once and then
//! never allocates again. A [`StreamId`] names a slot and its generation:
//! the id of an ended request finds nothing, even once its slot serves
//! another.

use crate::calls::StreamId;
use crate::host::Direction;
use crate::rules::Choice;

/// Which handler of a direction a pause waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    Headers,
    /// A whole buffered body, or the last chunk of a streamed one.
    Body,
    /// A streamed chunk before the last: pausing here without a call holds
    /// the bytes back, and the next body callback comes anyway.
    Chunk,
}

/// The progress of one direction of a request.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Half {
    /// The headers handler has finished (directly, or after its call).
    /// Kept for buffered bodies only, the one mode that reads it.
    pub(super) headers_done: bool,
    /// The kit returned `HeaderStopIteration` and has not let them go.
    pub(super) headers_held: bool,
    /// When the headers were held, in nanoseconds.
    pub(super) held_since: u64,
    /// The end of the stream was seen; `size` is then the whole body.
    pub(super) complete: bool,
    /// Bytes in the proxy's buffer at the last body callback.
    pub(super) size: usize,
    /// The buffered-body handler has run.
    pub(super) handled: bool,
    /// Bytes of the proxy's buffer already given to a streaming handler.
    pub(super) seen: usize,
    /// A response body over the limit: let it through unseen.
    pub(super) passthrough: bool,
    /// The headers of this direction reached the plugin.
    pub(super) started: bool,
    /// Response headers held unseen until the request's handlers are done
    /// (see [`request_pending`]).
    pub(super) deferred: bool,
}

/// Where the half of `direction` sits in [`Slot::halves`].
pub(super) fn index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// One request's state: the kit's, and the plugin's own `S`.
#[derive(Debug)]
pub(super) struct Slot<S> {
    generation: u32,
    live: bool,
    pub(super) context_id: u32,
    pub(super) choice: Choice,
    /// The direction and handler a pause waits in.
    pub(super) waiting: Option<(Direction, Stage)>,
    pub(super) halves: [Half; 2],
    pub(super) responded: bool,
    /// Waits for a count from [`Io::increment`](crate::Io::increment).
    pub(super) counting: bool,
    pub(super) state: S,
}

/// The slots of every request a worker has held, live or free.
#[derive(Debug)]
pub(super) struct Slots<S> {
    slots: Vec<Slot<S>>,
    free: Vec<u32>,
}

impl<S> Slots<S> {
    /// An empty pool.
    pub(super) const fn new() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// How many requests are live.
    pub(super) fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The slot of request `id`, if it is still live.
    pub(super) fn live(&mut self, id: StreamId) -> Option<&mut Slot<S>> {
        self.slots
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.generation == id.generation)
    }

    /// Every live slot.
    pub(super) fn live_mut(&mut self) -> impl Iterator<Item = &mut Slot<S>> {
        self.slots.iter_mut().filter(|s| s.live)
    }

    /// Frees the slot of request `id`. Returns whether it was live.
    pub(super) fn close(&mut self, id: StreamId) -> bool {
        let Some(slot) = self.live(id) else {
            return false;
        };
        slot.live = false;
        self.free.push(id.slot);
        true
    }
}

impl<S: Default> Slots<S> {
    /// Gives a new request of proxy context `context_id` a slot: a freed
    /// one, reset, or a new one when none is free.
    pub(super) fn open(&mut self, context_id: u32) -> StreamId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    live: false,
                    context_id,
                    choice: Choice::Skip,
                    waiting: None,
                    halves: [Half::default(); 2],
                    responded: false,
                    counting: false,
                    state: S::default(),
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = match self.slots.get_mut(index as usize) {
            Some(slot) => {
                slot.generation = slot.generation.wrapping_add(1);
                slot.live = true;
                slot.context_id = context_id;
                slot.choice = Choice::Skip;
                slot.waiting = None;
                slot.halves = [Half::default(); 2];
                slot.responded = false;
                slot.counting = false;
                slot.state = S::default();
                slot.generation
            }
            None => 0,
        };
        StreamId {
            slot: index,
            generation,
        }
    }
}

/// Whether a handler of the request waits on a call. A response arriving
/// then is deferred: with the headers held until the body is read (the
/// proxy honours `HeaderStopIteration`), the upstream cannot answer that
/// early; without the hold it can, and the plugin must still decide on the
/// request first. Only a call is waited for, never a body: once the
/// upstream's answer is complete the proxy drops request body it has not
/// delivered yet, so a wait for it would never end.
pub(super) fn request_pending<S>(slot: &Slot<S>) -> bool {
    matches!(slot.waiting, Some((Direction::Request, _)))
}
