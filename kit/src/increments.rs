//! Counter increments that share Redis round trips: what
//! [`Io::increment`](crate::Io::increment) does.
//!
//! A request asks "add `amount` to counter key K (expiring after `ttl`
//! seconds from its first write), and tell me the count". Increments share
//! calls two ways:
//!
//! * **one key**: while a call for K is in flight from this VM, further
//!   increments of K wait in K's queue and go to Redis together, as one
//!   increment of their sum, when that call is answered;
//! * **several keys**: while [`CALLS_IN_FLIGHT`] shared calls are in
//!   flight, an increment of a key with nothing in flight waits too, and
//!   when a call is answered every key that waits goes in the next call,
//!   one script over several keys (at most [`KEYS_PER_CALL`]).
//!
//! Each reply is shared out: each request is told the count it would have
//! seen had it been sent alone, in arrival order among the requests of its
//! key (the key's total minus what the requests after it added). Redis
//! still counts every increment, atomically, so decisions made on these
//! counts stay exact across any number of gateways; only the number of
//! round trips changes, from one per request to a few per reply time.
//!
//! On a Redis Cluster (`redis.cluster: true`) one call may only carry keys
//! of one hash slot, so keys are grouped by the slot of their hash tag.
//!
//! The tables are allocated once, at configuration: [`KEYS`] keys waiting
//! or in flight at once, [`BATCH`] requests per key and call, and keys of
//! at most [`KEY_BYTES`] bytes. An increment that finds no room (a new key
//! with every entry busy, a full queue, a longer key) is sent alone, as
//! one call of its own; nothing is dropped. A request that waits is sent
//! when the first call in flight is answered (every waiting key is sent
//! then), so none waits for more than that call and then its own: two
//! Redis timeouts at most.

use crate::calls::StreamId;
use crate::key_words;
use crate::redis::{Reply, Script};
use core::fmt;

/// The counting script: for each key `KEYS[i]`, adds `ARGV[2i]` (1 when
/// absent) and sets the expiry `ARGV[2i-1]` (seconds) on the key's first
/// write only.
///
/// With one key it returns the new count; with several, an array of the
/// keys' results in order. A key Redis cannot count (a hash, a string
/// that is not an integer) would refuse every request of its
/// window: the script replaces it with the amount in the same call and
/// that key's result is `[amount, <Redis's error>, <key>]`. An error the
/// replacement hits too (out of memory, a read-only replica) is that
/// key's result (with one key, the script's error reply).
///
/// A count past 2^31 - 1 is returned as a string of its digits, which
/// [`Reply::as_i64`] reads as the number: webdis 0.1.9 writes a RESP
/// integer of that size cut short (`:2147483648` comes out as `:21`, with
/// no line end), so such a count would be unreadable, and a quota used up
/// that far would be let through by the failure mode.
///
/// Counts saturate at 2^63 - 1 (`i64::MAX`): an increment that would take
/// a key past it (Redis's `increment or decrement would overflow`) leaves
/// the key as it is, and a count that Lua's numbers (doubles) round up to
/// 2^63, which no `i64` holds, is returned as 2^63 - 1 too. A key that far
/// past any limit thus keeps refusing until its window ends. Replacing it
/// as a key Redis cannot count would start it again from the amount and
/// let a used-up quota through, and returning the error would leave the
/// decision to the failure mode, which lets it through when open. Counts
/// past 2^53 come back rounded to what a double holds; every limit is far
/// below that, so the decision is the same.
pub const COUNT_SCRIPT: &str = "local out = {}\n\
local M = '9223372036854775807'\n\
local function big(n)\n\
if type(n) ~= 'number' or n <= 2147483647 then return n end\n\
if n >= 2^63 then return M end\n\
return string.format('%.0f', n)\n\
end\n\
for i = 1, #KEYS do\n\
local by = tonumber(ARGV[2 * i] or '1')\n\
local n = redis.pcall('INCRBY', KEYS[i], by)\n\
if type(n) == 'table' and string.find(tostring(n.err), 'overflow', 1, true) then n = M\n\
elseif type(n) == 'table' then\n\
local set = redis.pcall('SET', KEYS[i], by, 'EX', ARGV[2 * i - 1])\n\
if type(set) == 'table' and set.err then n = set else n = {big(by), n.err, KEYS[i]} end\n\
elseif n == by then redis.call('EXPIRE', KEYS[i], ARGV[2 * i - 1]) end\n\
out[i] = big(n)\n\
end\n\
if #KEYS == 1 then return out[1] end\n\
return out";

/// [`COUNT_SCRIPT`] with its digest, computed by the compiler.
pub(crate) const COUNT: Script = Script::new(COUNT_SCRIPT);

/// Keys that may wait or have a shared call in flight at once, per VM:
/// twice what one call carries, so the keys that arrive while a full call
/// is out still find room and wait for the next one instead of going
/// alone.
pub const KEYS: usize = 64;

/// Requests one key's share of a call answers, and requests one key's
/// queue holds.
pub const BATCH: usize = 32;

/// The longest key that can be shared; a longer one is sent alone.
pub const KEY_BYTES: usize = 256;

/// The most keys one call carries.
///
/// Through webdis the whole command is the URL path of one `GET`: a key
/// of [`KEY_BYTES`] percent-encoded takes at most 3 × 256 bytes, its two
/// numbers about 40, so thirty-two keys stay under 26 KiB, inside the
/// longest path the kit sends to webdis and the 80 KiB that webdis's
/// HTTP parser accepts for a request head. With one call in flight
/// ([`CALLS_IN_FLIGHT`]) every key that arrived during a round trip goes
/// in the next call, so a call must hold as many keys as requests a busy
/// worker has waiting; more would make each call's URL longer for little.
pub const KEYS_PER_CALL: usize = 32;

/// Shared calls in flight at which a key with nothing in flight waits for
/// the next reply instead of going at once.
///
/// One: a key goes at once only when no shared call is out; otherwise it
/// waits for that call's reply and goes in the next call with every key
/// that waited meanwhile. A lone request still pays one round trip, and
/// under load each round trip carries everything that arrived during the
/// previous one, so calls per request fall as concurrency rises. A second
/// call in flight would let some keys go a round trip sooner, at the cost
/// of about twice the calls for distinct keys, each of which costs Redis,
/// webdis and the gateway CPU of its own on the machines they share.
pub const CALLS_IN_FLIGHT: u32 = 1;

/// What Redis made of one request's increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count<'a> {
    /// The key's count with this request's amount added, as if the
    /// request had been sent alone.
    pub value: i64,
    /// Set when this request found the key holding a value Redis could not
    /// count and replaced it (only the first request of its key in a call
    /// can).
    pub repaired: Option<Repair<'a>>,
}

/// A key the counting script replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair<'a> {
    /// Redis's error for the old value.
    pub error: &'a [u8],
    /// The key.
    pub key: &'a [u8],
}

/// Why an increment has no count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountError<'a> {
    /// The call failed (every request in it gets the same error).
    Redis(crate::RedisError),
    /// Redis answered, but not with a count (an error reply such as OOM).
    NotCounted(Reply<'a>),
}

impl fmt::Display for CountError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountError::Redis(e) => e.fmt(f),
            CountError::NotCounted(reply) => write!(f, "Redis did not count the request: {reply}"),
        }
    }
}

impl<'a> Count<'a> {
    /// Reads a reply of [`COUNT_SCRIPT`] as a call's total: a count, or a
    /// repaired key's `[count, error, key]`. `None` for anything else.
    pub fn of(reply: &Reply<'a>) -> Option<Count<'a>> {
        match reply {
            Reply::Array(parts) => Some(Count {
                value: parts.get(0)?.as_i64()?,
                repaired: Some(Repair {
                    error: parts.get(1)?.as_bytes()?,
                    key: parts.get(2)?.as_bytes()?,
                }),
            }),
            Reply::Error(_) => None,
            other => other.as_i64().map(|value| Count {
                value,
                repaired: None,
            }),
        }
    }
}

/// One request waiting for a count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiter {
    pub(crate) stream: StreamId,
    pub(crate) amount: u64,
}

/// Where a key stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The entry holds no key.
    Free,
    /// Requests wait in `next` for the next reply, with no call of this
    /// key in flight.
    Waiting,
    /// Call `id` carries the requests in `sent`; `next` may hold more.
    Sent(u32),
}

/// One key waiting or with a call in flight.
#[derive(Debug)]
struct Entry {
    state: State,
    /// A hash of the key, compared before its bytes.
    hash: u32,
    /// The key's hash slot, read only on a cluster.
    slot: u16,
    key: Vec<u8>,
    ttl: u64,
    /// The requests the call in flight answers, in arrival order.
    sent: Vec<Waiter>,
    /// The requests that came since, for the next call.
    next: Vec<Waiter>,
}

impl Entry {
    /// Queues `waiter` for the next call of this key, or tells the caller
    /// to send it alone when the queue is full.
    fn queue(&mut self, waiter: Waiter) -> Placement {
        if self.next.len() >= BATCH {
            return Placement::Alone;
        }
        self.next.push(waiter);
        Placement::Queued
    }
}

/// Where [`Increments::place`] put an increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Waits for a reply: nothing to send now.
    Queued,
    /// First of its key, with room for another call: send it now as call
    /// `id`, a call of this one key.
    Lead(u32),
    /// No room: send it as a call of its own.
    Alone,
}

/// The key table, allocated whole at configuration.
#[derive(Debug, Default)]
pub(crate) struct Increments {
    entries: Vec<Entry>,
    /// Redis is a cluster: a call carries keys of one hash slot only.
    cluster: bool,
    /// Shared calls in flight.
    in_flight: u32,
    /// The id of the last call made.
    last_call: u32,
    /// The entry the last increment joined or opened.
    last: usize,
    /// Bit `i` set: entry `i` holds a key. Searches visit only those, so
    /// a key new to a quiet table does not walk all [`KEYS`] entries.
    used: u64,
    /// The entries of the call being sent, in the order of its keys.
    group: Vec<u32>,
    /// The requests of the reply being shared out, each with the position
    /// of its key in the call; swapped out while they are served, so it
    /// never allocates.
    pub(crate) delivering: Vec<(u32, Waiter)>,
    /// The requests of a call the host refused to send.
    pub(crate) refused: Vec<Waiter>,
}

impl Increments {
    /// Allocates the table, once; later configurations keep it (calls in
    /// flight point into it).
    pub(crate) fn allocate(&mut self) {
        if !self.entries.is_empty() {
            return;
        }
        self.entries = (0..KEYS)
            .map(|_| Entry {
                state: State::Free,
                hash: 0,
                slot: 0,
                key: Vec::with_capacity(KEY_BYTES),
                ttl: 0,
                sent: Vec::with_capacity(BATCH),
                next: Vec::with_capacity(BATCH),
            })
            .collect();
        self.group = Vec::with_capacity(KEYS_PER_CALL);
        self.delivering = Vec::with_capacity(KEYS_PER_CALL * BATCH);
        self.refused = Vec::with_capacity(KEYS_PER_CALL * BATCH);
    }

    /// Whether calls may only group keys of one hash slot.
    pub(crate) fn set_cluster(&mut self, cluster: bool) {
        self.cluster = cluster;
    }

    /// Finds a place for an increment of the key made of `parts`.
    pub(crate) fn place(&mut self, parts: &[&[u8]], waiter: Waiter, ttl: u64) -> Placement {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > KEY_BYTES {
            return Placement::Alone;
        }
        // A busy key's requests come one after another: the entry the
        // last increment found is tried by its bytes first, which saves
        // hashing the key and searching the table.
        if let Some(entry) = self.entries.get_mut(self.last) {
            if !matches!(entry.state, State::Free)
                && entry.key.len() == len
                && key_words::equals(&entry.key, parts)
            {
                return entry.queue(waiter);
            }
        }
        let hash = key_words::hash(parts);
        for index in indices(self.used) {
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            if entry.hash == hash && entry.key.len() == len && key_words::equals(&entry.key, parts)
            {
                self.last = index;
                return entry.queue(waiter);
            }
        }
        // The first free entry; none when every entry holds a key.
        let index = (!self.used).trailing_zeros() as usize;
        if index >= self.entries.len() {
            return Placement::Alone;
        }
        let busy = self.in_flight >= CALLS_IN_FLIGHT;
        let slot = if self.cluster { slot_of(parts) } else { 0 };
        // On a cluster, a key only waits when a call could carry it along:
        // another key of its slot waits or is in flight.
        let wait = busy
            && (!self.cluster
                || indices(self.used).any(|i| self.entries.get(i).is_some_and(|e| e.slot == slot)));
        let call = if wait { 0 } else { self.new_call() };
        let Some(entry) = self.entries.get_mut(index) else {
            return Placement::Alone;
        };
        self.last = index;
        self.used |= 1 << index;
        entry.hash = hash;
        entry.slot = slot;
        entry.ttl = ttl;
        entry.key.clear();
        for part in parts {
            entry.key.extend_from_slice(part);
        }
        entry.sent.clear();
        entry.next.clear();
        if wait {
            entry.state = State::Waiting;
            entry.next.push(waiter);
            return Placement::Queued;
        }
        entry.state = State::Sent(call);
        entry.sent.push(waiter);
        self.in_flight += 1;
        Placement::Lead(call)
    }

    fn new_call(&mut self) -> u32 {
        self.last_call = self.last_call.wrapping_add(1);
        self.last_call
    }

    /// The host refused the lead's call: the entry is free again (its only
    /// request hears the error from the caller).
    pub(crate) fn abandon(&mut self, call: u32) {
        for index in indices(self.used) {
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            if entry.state == State::Sent(call) {
                entry.state = State::Free;
                self.used &= !(1 << index);
                entry.sent.clear();
                entry.next.clear();
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
    }

    /// Call `call` answered: the requests of its keys move to
    /// `delivering`, each with the position of its key in the call, and
    /// the keys with a queue wait for [`Increments::next_group`]. Returns
    /// the number of keys the call carried.
    pub(crate) fn answered(&mut self, call: u32) -> u32 {
        self.delivering.clear();
        let mut keys = 0;
        for index in indices(self.used) {
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            if entry.state != State::Sent(call) {
                continue;
            }
            for waiter in entry.sent.drain(..) {
                self.delivering.push((keys, waiter));
            }
            if entry.next.is_empty() {
                entry.state = State::Free;
                self.used &= !(1 << index);
            } else {
                entry.state = State::Waiting;
            }
            keys += 1;
        }
        if keys > 0 {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        keys
    }

    /// Makes the next call of waiting keys: up to [`KEYS_PER_CALL`] of
    /// them (of one hash slot on a cluster), whose queues become the
    /// call's requests. Returns its id, with its keys in
    /// [`Increments::group`], or `None` when no key waits.
    pub(crate) fn next_group(&mut self) -> Option<u32> {
        let first = indices(self.used).find(|&i| {
            self.entries
                .get(i)
                .is_some_and(|e| e.state == State::Waiting)
        })?;
        let slot = self.entries.get(first)?.slot;
        let call = self.new_call();
        let cluster = self.cluster;
        self.group.clear();
        for index in indices(self.used).skip_while(|&i| i < first) {
            if self.group.len() == KEYS_PER_CALL {
                break;
            }
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            if entry.state != State::Waiting || (cluster && entry.slot != slot) {
                continue;
            }
            core::mem::swap(&mut entry.sent, &mut entry.next);
            entry.state = State::Sent(call);
            self.group.push(u32::try_from(index).unwrap_or(u32::MAX));
        }
        self.in_flight += 1;
        Some(call)
    }

    /// The keys of the call [`Increments::next_group`] made, in order:
    /// each key, its ttl and the sum of its requests' amounts.
    pub(crate) fn group(&self) -> impl Iterator<Item = (&[u8], u64, u64)> + '_ {
        self.group
            .iter()
            .filter_map(|&index| self.entries.get(index as usize))
            .map(|entry| {
                let sum = entry
                    .sent
                    .iter()
                    .fold(0u64, |sum, w| sum.saturating_add(w.amount));
                (&entry.key[..], entry.ttl, sum)
            })
    }

    /// The host refused to send call `call`: its requests move to
    /// `refused`, and its keys are free.
    pub(crate) fn refuse(&mut self, call: u32) {
        self.refused.clear();
        for index in indices(self.used) {
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            if entry.state == State::Sent(call) {
                self.refused.extend_from_slice(&entry.sent);
                self.refused.extend_from_slice(&entry.next);
                entry.sent.clear();
                entry.next.clear();
                entry.state = State::Free;
                self.used &= !(1 << index);
            }
        }
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

/// The indices of the bits set in `bits`, lowest first.
fn indices(mut bits: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let index = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(index)
    })
}

// One bit of `Increments::used` per entry.
const _: () = assert!(KEYS <= 64);

/// The Redis Cluster hash slot of the key made of `parts`: CRC-16/XMODEM
/// of its hash tag (the bytes between the first `{` and the next `}`,
/// when there are any), otherwise of the whole key, modulo 16384.
pub(crate) fn slot_of(parts: &[&[u8]]) -> u16 {
    let (mut whole, mut tag) = (0u16, 0u16);
    // 0: before `{`; 1: inside, tag empty so far; 2: inside; 3: tag closed.
    let mut stage = 0u8;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        whole = crc16_step(whole, b);
        match (stage, b) {
            (0, b'{') => stage = 1,
            (1, b'}') => stage = 4,
            (2, b'}') => stage = 3,
            (1 | 2, _) => {
                tag = crc16_step(tag, b);
                stage = 2;
            }
            _ => {}
        }
    }
    let crc = if stage == 3 { tag } else { whole };
    crc % 16384
}

fn crc16_step(crc: u16, byte: u8) -> u16 {
    let mut crc = crc ^ (u16::from(byte) << 8);
    for _ in 0..8 {
        crc = if crc & 0x8000 != 0 {
            (crc << 1) ^ 0x1021
        } else {
            crc << 1
        };
    }
    crc
}

/// The counts of one key's requests in a call, in arrival order: each is
/// the key's total minus what the requests after it added.
pub(crate) fn shares(
    total: i64,
    waiters: &[(u32, Waiter)],
) -> impl Iterator<Item = (usize, i64)> + '_ {
    let sum = waiters
        .iter()
        .fold(0i64, |s, (_, w)| s.saturating_add(clamp(w.amount)));
    let mut before = total.saturating_sub(sum);
    waiters.iter().enumerate().map(move |(i, (_, w))| {
        before = before.saturating_add(clamp(w.amount));
        (i, before)
    })
}

/// The largest amount (and ttl) sent to the counting script: 2^53, the
/// largest integer up to which every integer is exact in Lua's numbers
/// (doubles), which the script reads its arguments into. A larger amount
/// would reach `INCRBY` rounded and in exponent notation
/// (`9.2233720368547758e+18`), which Redis refuses; the script would then
/// store that text as the count, and the next call would replace it with
/// its own amount: the counter would start again from zero. Any real
/// limit is far below 2^53, so an amount clamped here still exhausts it.
pub const MAX_AMOUNT: u64 = 1 << 53;

/// `n`, at most [`MAX_AMOUNT`], as Redis's integer type.
pub(crate) fn clamp(n: u64) -> i64 {
    i64::try_from(n.min(MAX_AMOUNT)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saturated_count_reads_as_i64_max() {
        let reply = Reply::Bulk(b"9223372036854775807");
        let count = Count::of(&reply).unwrap();
        assert_eq!(count.value, i64::MAX);
        assert_eq!(count.repaired, None);
    }

    #[test]
    fn amounts_past_2_pow_53_are_clamped_to_what_lua_holds_exactly() {
        assert_eq!(clamp(7), 7);
        assert_eq!(clamp(MAX_AMOUNT), 9_007_199_254_740_992);
        assert_eq!(clamp(MAX_AMOUNT + 1), 9_007_199_254_740_992);
        assert_eq!(clamp(u64::MAX), 9_007_199_254_740_992);
        // Exact as a double, so the script's `tonumber` keeps every digit.
        assert_eq!(clamp(MAX_AMOUNT) as f64 as i64, clamp(MAX_AMOUNT));
    }

    fn waiter(slot: u32, amount: u64) -> Waiter {
        Waiter {
            stream: StreamId {
                slot,
                generation: 1,
            },
            amount,
        }
    }

    #[test]
    fn shares_are_the_counts_of_sending_alone() {
        let waiters = [(0, waiter(0, 1)), (0, waiter(1, 3)), (0, waiter(2, 1))];
        // Redis held 10 before the call: alone, they would see 11, 14, 15.
        let got: Vec<i64> = shares(15, &waiters).map(|(_, c)| c).collect();
        assert_eq!(got, [11, 14, 15]);
    }

    #[test]
    fn slots_are_redis_cluster_slots() {
        // `CLUSTER KEYSLOT` answers these (the Redis Cluster specification's
        // examples and its CRC-16 check value).
        assert_eq!(slot_of(&[b"123456789"]), 0x31c3);
        assert_eq!(slot_of(&[b"foo"]), 12182);
        assert_eq!(slot_of(&[b"somekey"]), 11058);
        assert_eq!(
            slot_of(&[b"{user1000}.following"]),
            slot_of(&[b"{user1000}.followers"])
        );
        assert_eq!(
            slot_of(&[b"{user1000}.fol", b"lowing"]),
            slot_of(&[b"user1000"])
        );
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(slot_of(&[b"{}x"]), slot_of(&[b"{}", b"x"]));
        assert_ne!(slot_of(&[b"{}x"]), slot_of(&[b""]));
        assert_eq!(slot_of(&[b"a{b}{c}"]), slot_of(&[b"b"]));
        assert_eq!(slot_of(&[b"a{b"]), slot_of(&[b"a{", b"b"]));
    }

    #[test]
    fn one_key_one_entry_and_full_tables_send_alone() {
        let mut table = Increments::default();
        table.allocate();
        let key: &[&[u8]] = &[b"k:{a}:", b"60"];
        assert_eq!(table.place(key, waiter(0, 1), 60), Placement::Lead(1));
        for i in 1..=BATCH as u32 {
            assert_eq!(
                table.place(&[b"k:{a}:60"], waiter(i, 1), 60),
                Placement::Queued
            );
        }
        assert_eq!(table.place(key, waiter(99, 1), 60), Placement::Alone);
        // With the one shared call out, every other key waits, until the
        // table is full.
        assert_eq!(CALLS_IN_FLIGHT, 1);
        for i in 0..KEYS as u32 - 1 {
            let name = format!("other{i:02}");
            assert_eq!(
                table.place(&[name.as_bytes()], waiter(i, 2), 60),
                Placement::Queued
            );
        }
        assert_eq!(table.place(&[b"new"], waiter(0, 1), 60), Placement::Alone);
        assert_eq!(
            table.place(&[&[b'x'; KEY_BYTES + 1]], waiter(0, 1), 60),
            Placement::Alone
        );
        assert_eq!(table.answered(1), 1);
        assert_eq!(table.delivering.len(), 1);
        // The hot key's queue and every waiting key go in calls of at
        // most KEYS_PER_CALL keys, in table order.
        let mut calls = Vec::new();
        while let Some(call) = table.next_group() {
            calls.push((
                call,
                table
                    .group()
                    .map(|(k, t, s)| (k.to_vec(), t, s))
                    .collect::<Vec<_>>(),
            ));
        }
        assert_eq!(calls.len(), KEYS.div_ceil(KEYS_PER_CALL));
        assert_eq!(calls[0].1.len(), KEYS_PER_CALL);
        assert_eq!(calls[0].1[0], (b"k:{a}:60".to_vec(), 60, BATCH as u64));
        assert_eq!(calls[0].1[1], (b"other00".to_vec(), 60, 2));
        let last = calls.len() - 1;
        assert_eq!(calls[last].1.len(), KEYS - KEYS_PER_CALL * last);
        assert_eq!(table.answered(calls[0].0), KEYS_PER_CALL as u32);
        assert_eq!(table.delivering.len(), BATCH + KEYS_PER_CALL - 1);
        assert!(table.delivering.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(table.next_group(), None);
        // Refused: the requests come back, the keys are free.
        for call in &calls[1..] {
            table.refuse(call.0);
        }
        assert_eq!(table.refused.len(), KEYS - KEYS_PER_CALL);
        assert_eq!(table.in_flight, 0);
        assert_eq!(
            table.place(&[b"new"], waiter(0, 1), 60),
            Placement::Lead(calls[last].0 + 1)
        );
    }

    #[test]
    fn the_last_entry_is_only_joined_by_its_own_key() {
        let mut table = Increments::default();
        table.allocate();
        // `a` opens entry 0 and is the last entry found.
        assert_eq!(table.place(&[b"k:a"], waiter(0, 1), 60), Placement::Lead(1));
        // `b` waits in entry 1, which becomes the last one; `a` again
        // finds its own entry by a search, not the last one's.
        assert_eq!(
            table.place(&[b"k:", b"b"], waiter(1, 1), 60),
            Placement::Queued
        );
        assert_eq!(
            table.place(&[b"k:", b"a"], waiter(2, 1), 60),
            Placement::Queued
        );
        // Same length, other bytes: not `a`'s entry.
        assert_eq!(table.place(&[b"k:c"], waiter(3, 1), 60), Placement::Queued);
        assert_eq!(table.answered(1), 1);
        assert_eq!(table.next_group(), Some(2));
        let keys: Vec<(Vec<u8>, u64)> =
            table.group().map(|(k, _, sum)| (k.to_vec(), sum)).collect();
        assert_eq!(
            keys,
            [
                (b"k:a".to_vec(), 1),
                (b"k:b".to_vec(), 1),
                (b"k:c".to_vec(), 1)
            ]
        );
        // Every entry freed: `d` takes the entry `a` had and becomes the
        // last one found; `a` must get an entry of its own.
        assert_eq!(table.answered(2), 3);
        assert_eq!(table.place(&[b"k:d"], waiter(4, 1), 60), Placement::Lead(3));
        assert_eq!(table.place(&[b"k:a"], waiter(5, 1), 60), Placement::Queued);
        assert_eq!(table.answered(3), 1);
        assert_eq!(table.next_group(), Some(4));
        let keys: Vec<Vec<u8>> = table.group().map(|(k, _, _)| k.to_vec()).collect();
        assert_eq!(keys, [b"k:a".to_vec()]);
    }

    #[test]
    fn on_a_cluster_a_call_carries_one_slot() {
        let mut table = Increments::default();
        table.allocate();
        table.set_cluster(true);
        assert!(matches!(
            table.place(&[b"a:{x}:1"], waiter(0, 1), 60),
            Placement::Lead(_)
        ));
        assert!(matches!(
            table.place(&[b"a:{y}:1"], waiter(1, 1), 60),
            Placement::Lead(_)
        ));
        // Two calls in flight: a key of a slot with a call in flight
        // waits, a key of another slot goes at once.
        assert_eq!(
            table.place(&[b"b:{x}:1"], waiter(2, 1), 60),
            Placement::Queued
        );
        assert_eq!(
            table.place(&[b"c:{x}:1"], waiter(3, 1), 60),
            Placement::Queued
        );
        assert_eq!(
            table.place(&[b"b:{y}:1"], waiter(4, 1), 60),
            Placement::Queued
        );
        assert!(matches!(
            table.place(&[b"a:{z}:1"], waiter(5, 1), 60),
            Placement::Lead(_)
        ));
        table.answered(1);
        let mut groups = Vec::new();
        while table.next_group().is_some() {
            groups.push(
                table
                    .group()
                    .map(|(k, _, _)| k.to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(
            groups,
            [
                vec![b"b:{x}:1".to_vec(), b"c:{x}:1".to_vec()],
                vec![b"b:{y}:1".to_vec()]
            ]
        );
    }
}
