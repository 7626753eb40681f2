//! Calls in flight: which request, or the root, each host token belongs to.
//!
//! Replies arrive by token, sometimes on the root context (Higress Redis),
//! sometimes after the request is gone. The table maps a token to its
//! owner: the stream that sent it, identified by slot and generation, so a
//! late reply for a finished request is recognised and dropped instead of
//! reaching the request that reused its slot; or the root context, for a
//! call that must outlive its request (its reply goes to the plugin's
//! root-level handler whatever became of the request).
//!
//! Entries are reused, never freed: after warm-up, sending a call costs no
//! allocation, and an entry keeps the capacity of the command it saved
//! for an EVALSHA retry.

use crate::resp::CommandBuf;

/// A request's place in the kit's pool of request states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// The tag [`Plugin::on_root_reply`](crate::Plugin::on_root_reply) gets
/// for the reply of a Redis call sent with [`Io::redis`](crate::Io::redis)
/// whose request ended before the reply came: the root adopted it.
pub const ADOPTED: u32 = u32::MAX;

/// Who a call's reply goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The request that sent it; dropped once that request has ended.
    Stream(StreamId),
    /// The root context, with the plugin's tag: the reply reaches
    /// [`Plugin::on_root_reply`](crate::Plugin::on_root_reply) whether or
    /// not the request that sent it still exists.
    Root(u32),
    /// A shared increment call, by the id the key table gave it: the
    /// reply is shared out to the requests of every key it carries.
    Shared(u32),
    /// An increment sent alone for this request; dropped once it has ended.
    Count(StreamId),
}

/// What kind of answer a token waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A Redis command sent through webdis; answered as an HTTP call.
    RedisWebdis,
    /// A Redis command sent with Higress's `proxy_redis_call`.
    RedisNative,
    /// A plain HTTP call of the plugin.
    Http,
}

#[derive(Debug)]
pub(crate) struct Call {
    live: bool,
    pub(crate) token: u32,
    pub(crate) owner: Owner,
    pub(crate) kind: CallKind,
    /// Source of the script of an EVALSHA, to retry as EVAL on NOSCRIPT.
    pub(crate) retry_source: Option<&'static str>,
    /// The EVALSHA as sent, to retry as EVAL on NOSCRIPT.
    pub(crate) retry_command: CommandBuf,
}

impl Call {
    /// Keeps an EVALSHA as sent for a retry as EVAL. It is swapped in, not
    /// copied: the caller's buffer is rewritten for its next command
    /// anyway, and takes this entry's old one.
    pub(crate) fn keep_for_retry(&mut self, source: &'static str, command: &mut CommandBuf) {
        self.retry_source = Some(source);
        core::mem::swap(&mut self.retry_command, command);
    }
}

/// A call just answered: whose it was, and how to retry it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Taken {
    pub(crate) owner: Owner,
    pub(crate) kind: CallKind,
    /// The script source of an EVALSHA, to retry as EVAL on NOSCRIPT.
    pub(crate) retry: Option<&'static str>,
    /// Where [`Calls::kept`] finds the command as sent.
    pub(crate) index: usize,
}

/// The table of calls in flight.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    entries: Vec<Call>,
}

impl Calls {
    pub(crate) fn insert(&mut self, token: u32, owner: Owner, kind: CallKind) -> &mut Call {
        let index = self
            .entries
            .iter()
            .position(|c| !c.live)
            .unwrap_or(self.entries.len());
        if index == self.entries.len() {
            self.entries.push(Call {
                live: false,
                token,
                owner,
                kind,
                retry_source: None,
                retry_command: CommandBuf::default(),
            });
        }
        #[allow(clippy::indexing_slicing)] // found or pushed just above
        let call = &mut self.entries[index];
        call.live = true;
        call.token = token;
        call.owner = owner;
        call.kind = kind;
        call.retry_source = None;
        call
    }

    /// Finds the live call of `token` and marks it answered. The entry
    /// keeps an EVALSHA as sent until its next use, for
    /// [`Calls::kept`].
    pub(crate) fn take(&mut self, token: u32) -> Option<Taken> {
        let index = self
            .entries
            .iter()
            .position(|c| c.live && c.token == token)?;
        let call = self.entries.get_mut(index)?;
        call.live = false;
        Some(Taken {
            owner: call.owner,
            kind: call.kind,
            retry: call.retry_source,
            index,
        })
    }

    /// The EVALSHA a call taken at `index` sent, until another call is
    /// inserted.
    pub(crate) fn kept(&self, index: usize) -> Option<&CommandBuf> {
        self.entries.get(index).map(|c| &c.retry_command)
    }

    #[cfg(test)]
    pub(crate) fn entries_for_tests(&self) -> &[Call] {
        &self.entries
    }

    /// Whether `stream` waits for any answer.
    pub(crate) fn waits(&self, stream: StreamId) -> bool {
        self.entries
            .iter()
            .any(|c| c.live && c.owner == Owner::Stream(stream))
    }

    /// A stream has ended: the root adopts its Redis calls still in
    /// flight (their replies go to the root-level handler with
    /// [`ADOPTED`], and a NOSCRIPT retry still happens, so a write the
    /// request sent is not lost with it); its HTTP calls are forgotten,
    /// their replies dropped.
    pub(crate) fn forget(&mut self, stream: StreamId) {
        let owner = Owner::Stream(stream);
        for call in self
            .entries
            .iter_mut()
            .filter(|c| c.live && c.owner == owner)
        {
            match call.kind {
                CallKind::RedisWebdis | CallKind::RedisNative => call.owner = Owner::Root(ADOPTED),
                CallKind::Http => call.live = false,
            }
        }
    }
}
