//! Replies to the calls of a [`Filter`]'s requests: HTTP answers, Redis
//! replies (which the Redis client may first re-send, as after
//! `NOSCRIPT`), and the counts of shared increments, each to the handler of
//! the request or the root context that owns the call.

use super::Filter;
use crate::calls::{CallKind, Owner, StreamId, Taken};
use crate::host::{BodyBuffer, HeaderMap, Host};
use crate::http::{parse_status, HttpError, HttpReply};
use crate::increments::{self, Count, CountError};
use crate::io::RootIo;
use crate::plugin::{Plugin, RedisUse};
use crate::redis::{HostAnswer, Redis, RedisError};

impl<P: Plugin, H: Host> Filter<P, H> {
    /// An HTTP call answered (`num_headers == 0` means it failed). Plain
    /// HTTP calls and webdis Redis commands both arrive here.
    ///
    /// `switch_context` asks the engine to make the request's context
    /// effective first, for answers delivered on the root context.
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        switch_context: bool,
    ) {
        let Some(call) = self.calls.take(token) else {
            return;
        };
        if !self.enter(call.owner, switch_context) {
            return;
        }
        match (call.kind, call.owner) {
            (CallKind::RedisWebdis | CallKind::RedisNative, _) => {
                let answer = HostAnswer::Webdis {
                    headers: num_headers,
                    body_size,
                };
                self.redis_answer(call, answer, switch_context);
            }
            (CallKind::Http, Owner::Stream(stream)) => {
                let mut body = core::mem::take(&mut self.reply);
                body.clear();
                if body_size > 0 {
                    if let Some(bytes) = self.host.body(BodyBuffer::HttpCallResponse, 0, body_size)
                    {
                        body.extend_from_slice(bytes);
                    }
                }
                let status = match num_headers {
                    0 => None,
                    _ => self
                        .host
                        .header(HeaderMap::HttpCallResponse, ":status")
                        .and_then(parse_status),
                };
                let reply = match status {
                    Some(status) => Ok(HttpReply {
                        status,
                        body: &body,
                    }),
                    None => Err(HttpError::Failed),
                };
                self.resume_after(stream, |cx| P::on_http_reply(cx, reply));
                self.reply = body;
            }
            // Only Redis calls are sent on behalf of the root.
            (CallKind::Http, _) => {}
        }
    }

    /// A Higress native Redis call answered (`status` 0) or failed.
    pub fn on_redis_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(call) = self.calls.take(token) else {
            return;
        };
        if !self.enter(call.owner, true) {
            return;
        }
        self.redis_answer(call, HostAnswer::Native { status, size }, true);
    }

    /// A Redis call answered: the client turns the answer into a reply
    /// (or re-sends the call), and the reply goes to the call's owner.
    fn redis_answer(&mut self, call: Taken, answer: HostAnswer, switch_context: bool) {
        let Some(client) = self.redis.as_mut() else {
            return;
        };
        let mut scratch = core::mem::take(&mut self.redis_reply);
        if let Some(reply) =
            client.receive(&mut self.host, &mut self.calls, call, answer, &mut scratch)
        {
            self.redis_reply(call.owner, reply, switch_context);
        }
        self.redis_reply = scratch;
    }

    /// Whether the reply's owner is still there (the root always is);
    /// switches the host to a stream if asked.
    fn enter(&mut self, owner: Owner, switch_context: bool) -> bool {
        let (Owner::Stream(stream) | Owner::Count(stream)) = owner else {
            return true;
        };
        let Some(context_id) = self.live_slot(stream).map(|s| s.context_id) else {
            // An increment is still retried after NOSCRIPT when its request
            // has gone, so that it is counted; its count is then dropped.
            return matches!(owner, Owner::Count(_));
        };
        if switch_context {
            self.host.set_effective_context(context_id);
        }
        true
    }

    /// Gives a Redis reply to its owner's handler.
    fn redis_reply(
        &mut self,
        owner: Owner,
        reply: Result<crate::Reply<'_>, RedisError>,
        switch_context: bool,
    ) {
        match owner {
            Owner::Count(stream) => self.deliver_count(stream, counted(reply), false),
            // Without the tables no call is shared: the arm is compiled
            // only into plugins that count.
            Owner::Shared(call) if P::REDIS == RedisUse::Counting => {
                self.share_out(call, reply, switch_context);
            }
            Owner::Shared(_) => {}
            Owner::Stream(stream) => self.resume_after(stream, |cx| P::on_redis_reply(cx, reply)),
            Owner::Root(tag) => {
                P::on_root_reply(self.root_io(), tag, reply);
            }
        }
    }

    /// A shared increment call answered: every key that waits goes to
    /// Redis in the next calls, then each request of the answered call
    /// gets its count (or the call's error), key by key in the call's
    /// order, and within a key in arrival order.
    fn share_out(
        &mut self,
        call: u32,
        reply: Result<crate::Reply<'_>, RedisError>,
        switch_context: bool,
    ) {
        let keys = self.increments.answered(call);
        let delivering = core::mem::take(&mut self.increments.delivering);
        self.send_waiting(switch_context);
        // With one key the reply is that key's result; with several, an
        // array of them in the call's order.
        let mut items = match &reply {
            Ok(crate::Reply::Array(items)) if keys > 1 && items.len() == keys as usize => {
                Some(items.iter())
            }
            _ => None,
        };
        let mut rest = &delivering[..];
        while let Some(&(key, _)) = rest.first() {
            let run = rest.iter().take_while(|(k, _)| *k == key).count();
            let (waiters, after) = rest.split_at(run);
            rest = after;
            let result = match (&reply, items.as_mut()) {
                (Err(e), _) => Err(CountError::Redis(*e)),
                (Ok(_), Some(items)) => match items.next() {
                    Some(item) => counted(Ok(item)),
                    None => Err(CountError::Redis(RedisError::Protocol)),
                },
                (Ok(reply), None) if keys == 1 => counted(Ok(*reply)),
                (Ok(reply), None) => Err(CountError::NotCounted(*reply)),
            };
            match result {
                Ok(total) => {
                    for (i, value) in increments::shares(total.value, waiters) {
                        let count = Count {
                            value,
                            repaired: total.repaired.filter(|_| i == 0),
                        };
                        if let Some((_, waiter)) = waiters.get(i) {
                            self.deliver_count(waiter.stream, Ok(count), switch_context);
                        }
                    }
                }
                Err(e) => {
                    for (_, waiter) in waiters {
                        self.deliver_count(waiter.stream, Err(e), switch_context);
                    }
                }
            }
        }
        self.increments.delivering = delivering;
    }

    /// Sends every key that waits, in calls of up to
    /// [`KEYS_PER_CALL`](increments::KEYS_PER_CALL) keys: all keys, then
    /// each key's ttl and amount. The requests of a call the host refuses
    /// get the refusal.
    fn send_waiting(&mut self, switch_context: bool) {
        loop {
            let Filter {
                host,
                redis,
                calls,
                increments,
                ..
            } = self;
            let Some(call) = increments.next_group() else {
                return;
            };
            let sent = match redis.as_mut() {
                Some(client) => {
                    let mut command = Redis {
                        client,
                        host,
                        calls,
                        owner: Owner::Shared(call),
                    }
                    .evalsha(&increments::COUNT);
                    for (key, _, _) in increments.group() {
                        command = command.key(key);
                    }
                    for (_, ttl, sum) in increments.group() {
                        command = command
                            .arg_int(increments::clamp(ttl))
                            .arg_int(increments::clamp(sum));
                    }
                    command.send()
                }
                None => Err(RedisError::NotConfigured),
            };
            if let Err(e) = sent {
                increments.refuse(call);
                let refused = core::mem::take(&mut self.increments.refused);
                for waiter in &refused {
                    self.deliver_count(waiter.stream, Err(CountError::Redis(e)), switch_context);
                }
                self.increments.refused = refused;
            }
        }
    }

    /// Gives one request its count, if it is still there.
    fn deliver_count(
        &mut self,
        stream: StreamId,
        count: Result<Count<'_>, CountError<'_>>,
        switch_context: bool,
    ) {
        let Some(slot) = self.live_slot(stream) else {
            // The request has ended: its count is moot, but a failure
            // still reaches the root, as for its other calls.
            if let Err(e) = count {
                self.adopted_failure(e);
            }
            return;
        };
        slot.counting = false;
        let context_id = slot.context_id;
        if switch_context {
            self.host.set_effective_context(context_id);
        }
        self.resume_after(stream, |cx| P::on_count(cx, count));
    }

    /// An increment of a request that has ended failed: the root hears
    /// of it with [`ADOPTED`](crate::ADOPTED).
    fn adopted_failure(&mut self, error: CountError<'_>) {
        let reply = match error {
            CountError::Redis(e) => Err(e),
            CountError::NotCounted(reply) => Ok(reply),
        };
        P::on_root_reply(self.root_io(), crate::ADOPTED, reply);
    }

    /// What the root context's handlers reach: the same host, Redis
    /// client, calls and counters the requests use.
    fn root_io(&mut self) -> RootIo<'_, H> {
        RootIo {
            host: &mut self.host,
            redis: self.redis.as_mut(),
            calls: &mut self.calls,
            counters: &mut self.counters.pending,
            log_level: self.log_level,
            plugin: P::NAME,
        }
    }
}

/// A reply of the counting script as a count, or why it is none.
fn counted(reply: Result<crate::Reply<'_>, RedisError>) -> Result<Count<'_>, CountError<'_>> {
    let reply = reply.map_err(CountError::Redis)?;
    Count::of(&reply).ok_or(CountError::NotCounted(reply))
}
