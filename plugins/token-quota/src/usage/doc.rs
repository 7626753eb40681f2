//! One JSON document skimmed for its usage objects, chunk by chunk.

use super::frame::{At, Frame};
use super::record::{Count, Name, Record, Slot};
use super::skim::{
    blanks, ends_scalar, escapes, line_end, next_stop, past, skip_string, skip_whole,
    starts_scalar, string_run, whole_count, whole_usage, StrEnd, CLOSE_ARRAY, CLOSE_OBJECT,
    OPEN_ARRAY, OPEN_OBJECT, PLAIN, QUOTE, TREE_CLASS,
};
use crate::bytes::{is_line_end, is_space, simple_escape};
use crate::json::{append_digit, Num};
use kit::hex;

/// Longest key kept (decoded) for comparison: `completion_tokens` fits.
/// Longer keys are no key the skim wants.
const KEY_CAP: usize = 24;

/// One JSON document skimmed for its usage objects.
///
/// Only the objects on the way to a usage object are read key by key:
/// the top-level object, `message` and `response` in it, and the usage
/// objects themselves, whose token counts are parsed exactly. Every other
/// value is skipped by its structure alone: a string up to its closing
/// quote (a word at a time), an array or object by matching brackets
/// outside strings, a number or literal up to the byte after it. What
/// the skim still refuses, so that a broken document gives no usage:
/// unbalanced or mismatched brackets, nesting deeper than
/// [`MAX_DEPTH`](crate::MAX_DEPTH), an unterminated string, a raw control
/// byte or an unknown escape in a string, a value that starts with a byte
/// no JSON value starts with, a missing `:` or `,` in a read object, a
/// trailing comma there, and anything but whitespace after the document.
/// What it no longer checks, inside skipped values: UTF-8, `\u` digits and
/// surrogate pairs, number and literal spelling, and `:` and `,` between
/// the members of skipped containers. That is what makes it cheap: about
/// one branch per byte of structure and a few instructions per word of
/// string, with no per-byte state machine.
#[derive(Clone, Debug)]
pub(super) struct Doc {
    at: At,
    /// The object being read, when `at` is inside one.
    frame: Option<Frame>,
    /// The key whose value comes next in the read object.
    name: Name,
    /// Nesting of the value being skipped, below `frame`.
    skip_depth: u8,
    /// The kinds of the open skipped containers as a stack of bits, the
    /// innermost in bit 0: set for an object. Pushed and popped by a shift
    /// by one, which costs two instructions on a `u128` where a shift by
    /// the depth costs a dozen.
    skip_objects: u128,
    /// A key cut by the end of a chunk or holding escapes, decoded.
    key: [u8; KEY_CAP],
    key_len: u8,
    /// False once the key outgrew `key` or held a non-ASCII escape.
    key_ok: bool,
    /// The token count being parsed, and whether it is still a
    /// non-negative integer within `u64`.
    num: u64,
    num_ok: bool,
    /// The usage objects by [`Slot`].
    records: [Record; 5],
    /// Whether any token field was set: until then the records are empty,
    /// and [`Doc::reset`] and [`Doc::usage`] need not look at them.
    pub(super) counted: bool,
    /// Whether the document is an object.
    pub(super) object: bool,
    /// A Gemini candidate had a `finishReason`: the chunk is the last.
    pub(super) finished: bool,
}

/// What [`Doc::members`] does with the value of a member whose key it
/// read.
enum Member {
    /// Skips it, as [`Doc::value`] would skip it ([`skip_whole`]).
    Skip,
    /// It was read here: the offset after it, or `None` to leave the member
    /// to [`Doc::run`].
    Read(Option<usize>),
}

impl Doc {
    pub(super) const fn new() -> Self {
        Doc {
            at: At::Start,
            frame: None,
            name: Name::Other,
            skip_depth: 0,
            skip_objects: 0,
            key: [0; KEY_CAP],
            key_len: 0,
            key_ok: true,
            num: 0,
            num_ok: false,
            records: [Record::EMPTY; 5],
            counted: false,
            object: false,
            finished: false,
        }
    }

    /// Back to the start of a document, for the next event. Cheaper than
    /// a fresh [`Doc::new`] (which writes all of its few hundred bytes)
    /// when no token field was set, as in most events of a stream.
    pub(super) fn reset(&mut self) {
        self.at = At::Start;
        self.frame = None;
        self.object = false;
        self.finished = false;
        if self.counted {
            self.counted = false;
            self.records = [Record::EMPTY; 5];
        }
    }

    /// Feeds the next bytes of the document.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        // One skim for both formats (half the code in the module): it
        // stops at line endings for the event stream, which in a JSON body
        // are whitespace. It stops only where whitespace is allowed or
        // between the tokens of a skipped container, so stepping over the
        // line ending is right, for one call per line.
        let mut pos = 0;
        while pos < bytes.len() && !matches!(self.at, At::Failed) {
            pos = self.run(bytes, pos) + 1;
        }
    }

    /// Feeds the line that starts at `pos` in `bytes`, up to its first `\n`
    /// or `\r`: the offset of that byte, or the length of `bytes`.
    pub(super) fn feed_line(&mut self, bytes: &[u8], pos: usize) -> usize {
        let pos = self.run(bytes, pos);
        if matches!(self.at, At::Failed) {
            return pos + line_end(bytes.get(pos..).unwrap_or_default());
        }
        pos
    }

    fn fail(&mut self) {
        self.at = At::Failed;
    }

    /// Whether the bytes fed are one JSON value as far as the skim checks.
    /// A top-level number or literal is complete at the end of input.
    pub(super) fn is_complete(&self) -> bool {
        match self.at {
            At::Done => true,
            At::Scalar => self.frame.is_none(),
            _ => false,
        }
    }

    /// The usage object that counts: the first slot that reported any
    /// token field, with that slot.
    pub(super) fn usage(&self) -> (Record, Slot) {
        const SLOTS: [Slot; 5] = [
            Slot::Top,
            Slot::Message,
            Slot::Response,
            Slot::Gemini,
            Slot::Ollama,
        ];
        if !self.counted {
            return (Record::EMPTY, Slot::Top);
        }
        self.records
            .into_iter()
            .zip(SLOTS)
            .find(|(r, _)| !r.is_empty())
            .unwrap_or((Record::EMPTY, Slot::Top))
    }

    fn record(&mut self, slot: Slot) -> &mut Record {
        let [top, message, response, gemini, ollama] = &mut self.records;
        match slot {
            Slot::Top => top,
            Slot::Message => message,
            Slot::Response => response,
            Slot::Gemini => gemini,
            Slot::Ollama => ollama,
        }
    }

    /// The skim over `s` from `pos`, up to its end or a line ending that
    /// is not inside a string (returned, not consumed: the caller knows
    /// whether it ends an event-stream line or is JSON whitespace); stops
    /// early once failed.
    fn run(&mut self, s: &[u8], pos: usize) -> usize {
        let mut pos = self.top(s, pos);
        // The usual end of an event's line: the fast path read the whole
        // object up to its line ending (the caller's, as below).
        if matches!(self.at, At::Done) && s.get(pos).is_some_and(|&b| is_line_end(b)) {
            return pos;
        }
        while let Some(&b) = s.get(pos) {
            let at = self.at;
            let next = match at {
                // Whitespace where a token may come; a line ending there is
                // the caller's. Elsewhere a line ending is a control byte
                // inside a string or escape (refused), or ends a number or
                // literal, and comes back here.
                At::Start
                | At::Key { .. }
                | At::Colon
                | At::Value
                | At::After
                | At::Done
                | At::Element { .. }
                    if b <= b' ' =>
                {
                    if is_line_end(b) {
                        return pos;
                    }
                    if !is_space(b) {
                        self.fail();
                        return pos;
                    }
                    pos + 1
                }
                // The tree skip stopped at a line ending: the caller's.
                At::Tree if is_line_end(b) => return pos,
                At::Tree => self.tree(s, pos),
                At::Str => self.string(s, pos),
                At::After if b == b',' && matches!(self.frame, Some(Frame::Candidates)) => {
                    self.at = At::Element { first: false };
                    pos + 1
                }
                At::After if b == b',' => {
                    // Straight on into the next key, the usual case.
                    if matches!(self.frame, Some(Frame::Top)) {
                        self.members(s, pos + 1, false)
                    } else if s.get(pos + 1) == Some(&b'"') {
                        self.key_start(s, pos + 1, b'"', false)
                    } else {
                        self.at = At::Key { first: false };
                        pos + 1
                    }
                }
                At::Key { first } => self.key_start(s, pos, b, first),
                At::Colon if b == b':' => {
                    self.at = At::Value;
                    pos + 1
                }
                At::Value => self.value(s, pos, b),
                At::After if matches!(self.frame, Some(Frame::Candidates)) => {
                    if b != b']' {
                        self.fail();
                        return pos;
                    }
                    self.close(pos)
                }
                At::After if b == b'}' => self.close(pos),
                At::Element { first } => self.element(s, pos, b, first),
                At::Scalar => self.scalar(s, pos),
                At::Number(num) => self.number(s, pos, num),
                At::StrEscape if escapes(b) => {
                    self.at = At::Str;
                    pos + 1
                }
                At::InKey => self.key_rest(s, pos),
                At::KeyEscape => self.key_escape(pos, b),
                At::KeyHex { left, code } => self.key_hex(pos, b, left, code),
                At::Start if b == b'{' => {
                    self.object = true;
                    self.frame = Some(Frame::Top);
                    self.at = At::Key { first: true };
                    pos + 1
                }
                At::Start => self.skip_value(s, pos, b),
                At::Failed => return pos,
                At::Colon | At::After | At::Done | At::StrEscape => {
                    self.fail();
                    return pos;
                }
            };
            // Every step consumes a byte or moves to a state that will; a
            // step that did neither would spin on hostile input forever (a
            // stalled worker in the proxy), so it ends the skim instead.
            // One compare per step, almost never taken.
            if next == pos && self.at == at {
                self.fail();
                return pos;
            }
            pos = next;
        }
        pos
    }

    /// The fast path of [`Doc::run`] from `pos`, when the scan is at the
    /// start of the document or between the members of the top-level
    /// object: see [`Doc::members`]. Elsewhere it leaves the scan as it is.
    fn top(&mut self, s: &[u8], pos: usize) -> usize {
        match (self.at, self.frame) {
            (At::Start, _) if s.get(pos) == Some(&b'{') => {
                self.object = true;
                self.frame = Some(Frame::Top);
                self.members(s, pos + 1, true)
            }
            (At::Key { first }, Some(Frame::Top)) => self.members(s, pos, first),
            (At::After, Some(Frame::Top)) => match s.get(blanks(s, pos)) {
                Some(b',') => self.members(s, blanks(s, pos) + 1, false),
                _ => pos,
            },
            _ => pos,
        }
    }

    /// The members of the top-level object from `pos`, where a key (or,
    /// when `first`, a `}`) may come, read in one loop with the position in
    /// a local while each is usual: a key without escapes, `:`, and a value
    /// that ends within `s` with no line ending outside its strings, with
    /// only spaces and tabs between, where the key is none the skim reads
    /// or its value is not an object, or it is a top-level `usage` object
    /// of plain counts that [`whole_usage`] reads whole (`message` and
    /// `response` objects, and any unusual usage object, go back to
    /// [`Doc::run`]). Every other value is skipped by
    /// [`skip_whole`], as [`Doc::value`] would skip it. Between these
    /// members the state is only `at`, so at the first member this does
    /// not take it leaves the scan where [`Doc::run`] would be before that
    /// member (or after the value before it), and [`Doc::run`] goes on from
    /// there: the result is the same as if it had read every byte itself.
    fn members(&mut self, s: &[u8], mut pos: usize, mut first: bool) -> usize {
        loop {
            let at = blanks(s, pos);
            match s.get(at) {
                Some(b'"') => {}
                Some(b'}') if first => return self.close(at),
                _ => {
                    self.at = At::Key { first };
                    return pos;
                }
            }
            let from = at + 1;
            // The key, whole and without escapes, then `:`.
            let key = match next_stop(s, from) {
                Some((stop, b'"')) => past(s, stop + 1, b':').map(|colon| (stop, colon)),
                _ => None,
            };
            let Some((stop, colon)) = key else {
                self.at = At::Key { first };
                return pos;
            };
            // Most keys are none the skim reads: their value is skipped,
            // one compare after the name. The usage object a `usage`,
            // `message`, `response` or `usageMetadata` key's value would be
            // (or lead to), Gemini's `candidates` and Ollama's counts are
            // looked at.
            let name = Name::of(s.get(from..stop));
            let value = blanks(s, colon);
            let member = match name {
                Name::Other => Member::Skip,
                Name::PromptEval | Name::Eval | Name::Candidates => {
                    self.rare_member(s, name, value)
                }
                _ => self.slot_member(s, name, value),
            };
            // One skip for every member that is skipped, rather than one
            // inlined into each place that decides to skip.
            let end = match member {
                Member::Skip => skip_whole(s, value),
                Member::Read(end) => end,
            };
            let Some(end) = end else {
                self.at = At::Key { first };
                return pos;
            };
            if let Some(next) = past(s, end, b',') {
                pos = next;
                first = false;
                continue;
            }
            if let Some(next) = past(s, end, b'}') {
                return self.close(next - 1);
            }
            self.at = At::After;
            return end;
        }
    }

    /// [`Doc::members`] for a member of the top-level object named `name`
    /// (a name the skim knows, but neither Gemini's `candidates` nor an
    /// Ollama count) whose value starts at `value`.
    ///
    /// A top-level usage object (`usage`, `usageMetadata`) that is whole
    /// and usual is read here ([`whole_usage`]); `message` and `response`
    /// objects, and any other such value that is an object, by
    /// [`Doc::run`]. A value that is no object, as `"usage":null` in most
    /// events of a stream, is no usage, and replaces any before it
    /// ([`Doc::value`]); it is skipped. (Should the skip stop short,
    /// [`Doc::run`] reads the member again and replaces the same usage.)
    #[inline(always)]
    fn slot_member(&mut self, s: &[u8], name: Name, value: usize) -> Member {
        let slot = match name {
            Name::Usage => Slot::Top,
            Name::Message => Slot::Message,
            Name::Response => Slot::Response,
            Name::Metadata => Slot::Gemini,
            _ => return Member::Skip,
        };
        if s.get(value) != Some(&b'{') {
            if self.counted {
                *self.record(slot) = Record::EMPTY;
            }
            return Member::Skip;
        }
        if !matches!(slot, Slot::Top | Slot::Gemini) {
            return Member::Read(None);
        }
        let Some((end, record, counted)) = whole_usage(s, value, slot) else {
            return Member::Read(None);
        };
        self.counted |= counted;
        if self.counted {
            *self.record(slot) = record;
        }
        Member::Read(Some(end))
    }

    /// [`Doc::members`] for a member of the top-level object named
    /// `name`, Gemini's `candidates` or one of Ollama's counts, whose
    /// value starts at `value`. Left to [`Doc::run`]: `candidates` as an
    /// array, read for its `finishReason`, and a count that is not a plain
    /// integer. A value that is no number is no count, replaces any before
    /// it and is skipped (should the skip stop short, [`Doc::run`] reads
    /// the member again and replaces the same count).
    #[cold]
    #[inline(never)]
    fn rare_member(&mut self, s: &[u8], name: Name, value: usize) -> Member {
        let Some(&b) = s.get(value) else {
            return Member::Read(None);
        };
        if name == Name::Candidates {
            if b == b'[' {
                return Member::Read(None);
            }
            return Member::Skip;
        }
        // Ollama's counts sit in the top-level object itself.
        let count = match b {
            b'0'..=b'9' => whole_count(s, value),
            b'-' => None,
            _ => {
                if self.counted {
                    self.record(Slot::Ollama).set(name, Count::Absent);
                }
                return Member::Skip;
            }
        };
        let Some((end, count)) = count else {
            return Member::Read(None);
        };
        self.record(Slot::Ollama).set(name, count);
        self.counted = true;
        Member::Read(Some(end))
    }

    /// Where a key or (right after `{`) a `}` may come.
    fn key_start(&mut self, s: &[u8], pos: usize, b: u8, first: bool) -> usize {
        match b {
            b'"' => {
                let from = pos + 1;
                let rest = s.get(from..).unwrap_or_default();
                let run = string_run(rest);
                // The usual key: whole in this chunk, no escapes, then
                // `:` and the value, taken in the same step.
                if rest.get(run) == Some(&b'"') {
                    self.name = Name::of_outlined(rest.get(..run));
                    let end = from + run + 1;
                    if s.get(end) != Some(&b':') {
                        self.at = At::Colon;
                        return end;
                    }
                    self.at = At::Value;
                    return match s.get(end + 1) {
                        Some(&v) if v > b' ' => self.value(s, end + 1, v),
                        _ => end + 1,
                    };
                }
                self.key_len = 0;
                self.key_ok = true;
                self.at = At::InKey;
                from
            }
            b'}' if first => self.close(pos),
            _ => {
                self.fail();
                pos
            }
        }
    }

    /// The rest of a key that needs decoding or spans chunks.
    fn key_rest(&mut self, s: &[u8], pos: usize) -> usize {
        let rest = s.get(pos..).unwrap_or_default();
        let run = string_run(rest);
        for &b in rest.get(..run).unwrap_or_default() {
            self.key_push(b);
        }
        let at = pos + run;
        match s.get(at) {
            None => at,
            Some(b'"') => {
                let key = self.key.get(..usize::from(self.key_len));
                self.name = Name::of_outlined(key.filter(|_| self.key_ok));
                self.at = At::Colon;
                at + 1
            }
            Some(b'\\') => {
                self.at = At::KeyEscape;
                at + 1
            }
            Some(_) => {
                self.fail();
                at
            }
        }
    }

    fn key_push(&mut self, b: u8) {
        match self.key.get_mut(usize::from(self.key_len)) {
            Some(slot) => {
                *slot = b;
                self.key_len += 1;
            }
            None => self.key_ok = false,
        }
    }

    fn key_escape(&mut self, pos: usize, b: u8) -> usize {
        if b == b'u' {
            self.at = At::KeyHex { left: 4, code: 0 };
        } else if let Some(decoded) = simple_escape(b) {
            self.key_push(decoded);
            self.at = At::InKey;
        } else {
            self.fail();
            return pos;
        }
        pos + 1
    }

    fn key_hex(&mut self, pos: usize, b: u8, left: u8, code: u16) -> usize {
        let Some(digit) = hex::value(b) else {
            self.fail();
            return pos;
        };
        let code = (code << 4) | u16::from(digit);
        self.at = if left > 1 {
            At::KeyHex {
                left: left - 1,
                code,
            }
        } else {
            // No key the skim wants has a character beyond ASCII, so any
            // such escape (surrogates included) only spoils the key.
            match u8::try_from(code) {
                Ok(ascii) if ascii < 0x80 => self.key_push(ascii),
                _ => self.key_ok = false,
            }
            At::InKey
        };
        pos + 1
    }

    /// The first byte `b` of a value in a read object, at `pos`.
    fn value(&mut self, s: &[u8], pos: usize, b: u8) -> usize {
        let Some(frame) = self.frame else {
            return self.skip_value(s, pos, b);
        };
        // A new value for a key replaces whatever an earlier duplicate of
        // the key said.
        let opens = match (frame, self.name) {
            (Frame::Top, Name::Usage) => Some(Frame::Record(Slot::Top)),
            (Frame::Top, Name::Message) => Some(Frame::Source(Slot::Message)),
            (Frame::Top, Name::Response) => Some(Frame::Source(Slot::Response)),
            (Frame::Top, Name::Metadata) => Some(Frame::Record(Slot::Gemini)),
            (Frame::Source(slot), Name::Usage) => Some(Frame::Record(slot)),
            (Frame::Record(slot), name) if name.counts_in(slot) => {
                return self.count_value(s, pos, b, slot);
            }
            (Frame::Top, name) if name.counts_in(Slot::Ollama) => {
                return self.count_value(s, pos, b, Slot::Ollama);
            }
            (Frame::Top, Name::Candidates) if b == b'[' => {
                self.frame = Some(Frame::Candidates);
                self.at = At::Element { first: true };
                return pos + 1;
            }
            (Frame::Candidate, Name::FinishReason) => {
                // A reason, not `null`: the model is done.
                self.finished |= b == b'"';
                None
            }
            _ => None,
        };
        if let Some(inner) = opens {
            let slot = match inner {
                Frame::Record(slot) | Frame::Source(slot) => slot,
                // (Never opened here.)
                Frame::Top | Frame::Candidates | Frame::Candidate => Slot::Top,
            };
            // (Still empty unless a count was set.)
            if self.counted {
                *self.record(slot) = Record::EMPTY;
            }
            if b == b'{' {
                self.frame = Some(inner);
                self.at = At::Key { first: true };
                return pos + 1;
            }
        }
        self.skip_value(s, pos, b)
    }

    /// The first byte `b` of an element of `candidates`, at `pos`: an
    /// object is read for its `finishReason`, anything else skipped.
    fn element(&mut self, s: &[u8], pos: usize, b: u8, first: bool) -> usize {
        match b {
            b']' if first => self.close(pos),
            b'{' => {
                self.frame = Some(Frame::Candidate);
                self.at = At::Key { first: true };
                pos + 1
            }
            _ => self.skip_value(s, pos, b),
        }
    }

    /// The value, first byte `b` at `pos`, of a token field of the usage
    /// in `slot`: a count when it is a number, no count otherwise.
    fn count_value(&mut self, s: &[u8], pos: usize, b: u8, slot: Slot) -> usize {
        if matches!(b, b'-' | b'0'..=b'9') {
            return self.number_start(s, pos, b);
        }
        // Not a number: no count, whatever it is.
        let name = self.name;
        self.record(slot).set(name, Count::Absent);
        self.skip_value(s, pos, b)
    }

    /// Skips the value whose first byte `b` is at `pos`, as far as `s`
    /// goes.
    fn skip_value(&mut self, s: &[u8], pos: usize, b: u8) -> usize {
        self.skip_depth = 0;
        match b {
            b'"' => self.string(s, pos + 1),
            b'{' | b'[' => {
                if !self.open(b == b'{') {
                    return pos;
                }
                self.at = At::Tree;
                self.tree(s, pos + 1)
            }
            _ if starts_scalar(b) => {
                self.at = At::Scalar;
                self.scalar(s, pos + 1)
            }
            _ => {
                self.fail();
                pos
            }
        }
    }

    /// A skipped container opens; false (and failed) when that is deeper
    /// than [`MAX_DEPTH`](crate::MAX_DEPTH).
    fn open(&mut self, object: bool) -> bool {
        let base = self.frame.map_or(0, Frame::depth);
        if base + self.skip_depth >= crate::MAX_DEPTH {
            self.fail();
            return false;
        }
        self.skip_objects = (self.skip_objects << 1) | u128::from(object);
        self.skip_depth += 1;
        true
    }

    /// The skipped value ended.
    fn value_done(&mut self) {
        self.at = if self.frame.is_some() {
            At::After
        } else {
            At::Done
        };
    }

    /// Skips arrays and objects from `pos`: brackets counted and matched,
    /// strings jumped over, every other byte passed with one table load.
    fn tree(&mut self, s: &[u8], mut pos: usize) -> usize {
        while let Some(&b) = s.get(pos) {
            let class = TREE_CLASS.get(usize::from(b)).copied().unwrap_or(PLAIN);
            if class == PLAIN {
                pos += 1;
                continue;
            }
            match class {
                QUOTE => match skip_string(s, pos + 1) {
                    StrEnd::Closed(end) => pos = end,
                    StrEnd::Cut(escape) => {
                        self.at = if escape { At::StrEscape } else { At::Str };
                        return s.len();
                    }
                    StrEnd::Bad => {
                        self.fail();
                        return pos;
                    }
                },
                OPEN_OBJECT | OPEN_ARRAY => {
                    if !self.open(class == OPEN_OBJECT) {
                        return pos;
                    }
                    pos += 1;
                }
                CLOSE_OBJECT | CLOSE_ARRAY => {
                    let Some(depth) = self.skip_depth.checked_sub(1) else {
                        self.fail();
                        return pos;
                    };
                    let object = self.skip_objects & 1 == 1;
                    if object != (class == CLOSE_OBJECT) {
                        self.fail();
                        return pos;
                    }
                    self.skip_objects >>= 1;
                    self.skip_depth = depth;
                    pos += 1;
                    if depth == 0 {
                        self.value_done();
                        return pos;
                    }
                }
                // A line ending: the caller's.
                _ => return pos,
            }
        }
        pos
    }

    /// Skips the rest of a string from `pos`.
    fn string(&mut self, s: &[u8], pos: usize) -> usize {
        match skip_string(s, pos) {
            StrEnd::Closed(end) => {
                if self.skip_depth == 0 {
                    self.value_done();
                } else {
                    self.at = At::Tree;
                }
                end
            }
            StrEnd::Cut(escape) => {
                self.at = if escape { At::StrEscape } else { At::Str };
                s.len()
            }
            StrEnd::Bad => {
                self.fail();
                pos
            }
        }
    }

    /// Skips a number or literal up to the byte after it (left for what
    /// follows to judge).
    fn scalar(&mut self, s: &[u8], mut pos: usize) -> usize {
        while let Some(&b) = s.get(pos) {
            if ends_scalar(b) {
                self.value_done();
                return pos;
            }
            pos += 1;
        }
        pos
    }

    /// A token count starts with `b` at `pos`.
    fn number_start(&mut self, s: &[u8], pos: usize, b: u8) -> usize {
        self.num = 0;
        self.num_ok = b != b'-';
        let num = match b {
            b'-' => Num::Minus,
            b'0' => Num::Zero,
            _ => {
                self.num = u64::from(b - b'0');
                Num::Int
            }
        };
        self.number(s, pos + 1, num)
    }

    /// The bytes of a token count from `pos`, `num` the grammar state so
    /// far, parsed exactly as JSON: the count is its value when it is a
    /// non-negative integer within `u64`, bad for any other number.
    fn number(&mut self, s: &[u8], mut pos: usize, mut num: Num) -> usize {
        while let Some(&b) = s.get(pos) {
            let digit = b.is_ascii_digit();
            num = match (num, b) {
                (Num::Int, _) if digit => {
                    match append_digit(self.num, b) {
                        Some(n) => self.num = n,
                        None => self.num_ok = false,
                    }
                    Num::Int
                }
                (Num::Minus, b'0') => Num::Zero,
                (Num::Minus, _) if digit => Num::Int,
                (Num::Zero | Num::Int, b'.') => Num::Dot,
                (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
                (Num::Dot | Num::Frac, _) if digit => Num::Frac,
                (Num::Exp, b'+' | b'-') => Num::ExpSign,
                (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Num::ExpDigits,
                // The number ended at `b`, which is left for what follows.
                (Num::Zero | Num::Int | Num::Frac | Num::ExpDigits, _) if !digit => {
                    let count = if self.num_ok {
                        Count::Tokens(self.num)
                    } else {
                        Count::Bad
                    };
                    let slot = match self.frame {
                        Some(Frame::Record(slot)) => Some(slot),
                        // Only a count key of Ollama's leads here.
                        Some(Frame::Top) => Some(Slot::Ollama),
                        Some(Frame::Source(_) | Frame::Candidates | Frame::Candidate) | None => {
                            None
                        }
                    };
                    if let Some(slot) = slot {
                        let name = self.name;
                        self.record(slot).set(name, count);
                        self.counted = true;
                    }
                    self.at = At::After;
                    return pos;
                }
                // `-`, `.`, `e` with nothing after, or a leading zero.
                _ => {
                    self.fail();
                    return pos;
                }
            };
            // A sign, fraction or exponent: a number, but no count.
            if !matches!(num, Num::Int | Num::Zero) {
                self.num_ok = false;
            }
            pos += 1;
        }
        self.at = At::Number(num);
        pos
    }

    /// `}` at `pos` closes the read object.
    fn close(&mut self, pos: usize) -> usize {
        match self.frame.and_then(Frame::parent) {
            Some(parent) => {
                self.frame = Some(parent);
                self.at = At::After;
            }
            None => {
                self.frame = None;
                self.at = At::Done;
            }
        }
        pos + 1
    }
}
