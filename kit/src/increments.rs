//! Counter increments that share Redis round trips: what
//! [`Io::increment`](crate::Io::increment) does.
//!
//! A request asks "add `amount` to counter key K (expiring after `ttl`
//! seconds from its first write), and tell me the count". While one call
//! for K is in flight from this VM, further increments of K wait in K's
//! queue; when the reply comes, the whole queue goes to Redis as one
//! increment of its sum, and the reply is shared out: each request is told
//! the count it would have seen had it been sent alone, in arrival order
//! (the total minus what the requests after it added). Redis still counts
//! every increment, atomically, so decisions made on these counts stay
//! exact across any number of gateways; only the number of round trips
//! changes, from one per request to one per key per reply time.
//!
//! The tables are allocated once, at configuration: [`KEYS`] keys with a
//! call in flight at once, [`BATCH`] requests per call and per queue, and
//! keys of at most [`KEY_BYTES`] bytes. An increment that finds no room
//! (a new key with every entry busy, a full queue, a longer key) is sent
//! alone, as one call of its own; nothing is dropped, and no request waits
//! for more than the call in flight and then its own: two Redis timeouts
//! at most.

use crate::calls::StreamId;
use crate::redis::{Reply, Script};
use core::fmt;

/// The counting script: adds `ARGV[2]` (1 when absent) to `KEYS[1]` and
/// returns the new count, setting the expiry `ARGV[1]` (seconds) on the
/// key's first write only.
///
/// A key Redis cannot count (a hash, a string that is not an integer, an
/// overflow) would refuse every request of its window: the script replaces
/// it with the amount in the same call and answers
/// `[amount, <Redis's error>, <key>]`. An error the replacement hits too
/// (out of memory, a read-only replica) is the script's error reply.
pub const COUNT_SCRIPT: &str = "local by = tonumber(ARGV[2] or '1')\n\
local n = redis.pcall('INCRBY', KEYS[1], by)\n\
if type(n) == 'table' then\n\
redis.call('SET', KEYS[1], by, 'EX', ARGV[1])\n\
return {by, n.err, KEYS[1]}\n\
end\n\
if n == by then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n\
return n";

/// [`COUNT_SCRIPT`] with its digest, computed by the compiler.
pub(crate) const COUNT: Script = Script::new(COUNT_SCRIPT);

/// Keys that may have a shared call in flight at once, per VM.
pub const KEYS: usize = 32;

/// Requests one shared call answers, and requests one key's queue holds.
pub const BATCH: usize = 32;

/// The longest key that can be shared; a longer one is sent alone.
pub const KEY_BYTES: usize = 256;

/// What Redis made of one request's increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count<'a> {
    /// The key's count with this request's amount added, as if the
    /// request had been sent alone.
    pub value: i64,
    /// Set when this request found the key holding a value Redis could not
    /// count and replaced it (only the first of a call can).
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

/// One key with a call in flight.
#[derive(Debug)]
struct Entry {
    live: bool,
    key: Vec<u8>,
    ttl: u64,
    /// The requests the call in flight answers, in arrival order.
    in_flight: Vec<Waiter>,
    /// The requests that came since, for the next call.
    queued: Vec<Waiter>,
}

/// Where [`Increments::place`] put an increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Queued behind the call in flight for its key: nothing to send.
    Queued,
    /// First of its key: send the call for entry `index` now.
    Lead(u32),
    /// No room: send it as a call of its own.
    Alone,
}

/// The key table, allocated whole at configuration.
#[derive(Debug, Default)]
pub(crate) struct Increments {
    entries: Vec<Entry>,
    /// The requests of the reply being shared out; swapped with an entry's
    /// list, so it never allocates.
    pub(crate) delivering: Vec<Waiter>,
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
                live: false,
                key: Vec::with_capacity(KEY_BYTES),
                ttl: 0,
                in_flight: Vec::with_capacity(BATCH),
                queued: Vec::with_capacity(BATCH),
            })
            .collect();
        self.delivering = Vec::with_capacity(BATCH);
        self.refused = Vec::with_capacity(BATCH);
    }

    /// Finds a place for an increment of the key made of `parts`.
    pub(crate) fn place(&mut self, parts: &[&[u8]], waiter: Waiter, ttl: u64) -> Placement {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > KEY_BYTES {
            return Placement::Alone;
        }
        let mut free = None;
        for (index, entry) in self.entries.iter_mut().enumerate() {
            if !entry.live {
                free = free.or(Some(index));
                continue;
            }
            if entry.key.len() == len && same_bytes(&entry.key, parts) {
                if entry.queued.len() >= BATCH {
                    return Placement::Alone;
                }
                entry.queued.push(waiter);
                return Placement::Queued;
            }
        }
        let Some(index) = free else {
            return Placement::Alone;
        };
        let Some(entry) = self.entries.get_mut(index) else {
            return Placement::Alone;
        };
        entry.live = true;
        entry.ttl = ttl;
        entry.key.clear();
        for part in parts {
            entry.key.extend_from_slice(part);
        }
        entry.in_flight.clear();
        entry.queued.clear();
        entry.in_flight.push(waiter);
        u32::try_from(index).map_or(Placement::Alone, Placement::Lead)
    }

    /// The host refused the lead's call: the entry is free again (its only
    /// request hears the error from the caller).
    pub(crate) fn abandon(&mut self, index: u32) {
        if let Some(entry) = self.entries.get_mut(index as usize) {
            entry.live = false;
            entry.in_flight.clear();
            entry.queued.clear();
        }
    }

    /// The call of entry `index` answered: its requests move to
    /// `delivering`, and the queue becomes the call in flight. Returns the
    /// key, its ttl and the queue's sum when there is a queue to send;
    /// otherwise the entry is free.
    pub(crate) fn answered(&mut self, index: u32) -> Option<(&[u8], u64, u64)> {
        let entry = self.entries.get_mut(index as usize)?;
        self.delivering.clear();
        core::mem::swap(&mut self.delivering, &mut entry.in_flight);
        core::mem::swap(&mut entry.in_flight, &mut entry.queued);
        if entry.in_flight.is_empty() {
            entry.live = false;
            return None;
        }
        let sum = entry
            .in_flight
            .iter()
            .fold(0u64, |sum, w| sum.saturating_add(w.amount));
        Some((&entry.key, entry.ttl, sum))
    }

    /// The host refused to send the queue of entry `index`: its requests
    /// move to `refused`, and the entry is free.
    pub(crate) fn refuse(&mut self, index: u32) {
        if let Some(entry) = self.entries.get_mut(index as usize) {
            self.refused.clear();
            core::mem::swap(&mut self.refused, &mut entry.in_flight);
            entry.live = false;
            entry.queued.clear();
        }
    }
}

fn same_bytes(key: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = key;
    for part in parts {
        let Some((head, tail)) = rest.split_at_checked(part.len()) else {
            return false;
        };
        if head != *part {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// The counts of a call's requests, in arrival order: each is the total
/// minus what the requests after it added.
pub(crate) fn shares(total: i64, waiters: &[Waiter]) -> impl Iterator<Item = (usize, i64)> + '_ {
    let sum = waiters
        .iter()
        .fold(0i64, |s, w| s.saturating_add(clamp(w.amount)));
    let mut before = total.saturating_sub(sum);
    waiters.iter().enumerate().map(move |(i, w)| {
        before = before.saturating_add(clamp(w.amount));
        (i, before)
    })
}

pub(crate) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let waiters = [waiter(0, 1), waiter(1, 3), waiter(2, 1)];
        // Redis held 10 before the call: alone, they would see 11, 14, 15.
        let got: Vec<i64> = shares(15, &waiters).map(|(_, c)| c).collect();
        assert_eq!(got, [11, 14, 15]);
    }

    #[test]
    fn one_key_one_entry_and_full_tables_send_alone() {
        let mut table = Increments::default();
        table.allocate();
        let key: &[&[u8]] = &[b"k:{a}:", b"60"];
        assert_eq!(table.place(key, waiter(0, 1), 60), Placement::Lead(0));
        for i in 1..=BATCH as u32 {
            assert_eq!(
                table.place(&[b"k:{a}:60"], waiter(i, 1), 60),
                Placement::Queued
            );
        }
        assert_eq!(table.place(key, waiter(99, 1), 60), Placement::Alone);
        for i in 1..KEYS as u32 {
            let name = format!("other{i}");
            assert_eq!(
                table.place(&[name.as_bytes()], waiter(i, 1), 60),
                Placement::Lead(i)
            );
        }
        assert_eq!(table.place(&[b"new"], waiter(0, 1), 60), Placement::Alone);
        assert_eq!(
            table.place(&[&[b'x'; KEY_BYTES + 1]], waiter(0, 1), 60),
            Placement::Alone
        );
        let (sent, ttl, sum) = table.answered(0).unwrap();
        assert_eq!((sent, ttl, sum), (&b"k:{a}:60"[..], 60, BATCH as u64));
        assert_eq!(table.delivering.len(), 1);
        assert!(table.answered(0).is_none());
        assert_eq!(table.delivering.len(), BATCH);
        assert_eq!(table.place(&[b"new"], waiter(0, 1), 60), Placement::Lead(0));
    }
}
