//! The keys the scanner looks for and the token counts a usage object
//! holds, by where the object hangs.

/// A key the scanner cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Name {
    Other,
    Usage,
    Message,
    Response,
    Total,
    Prompt,
    Completion,
    Input,
    Output,
    /// Gemini's `usageMetadata`.
    Metadata,
    /// Gemini's `totalTokenCount`.
    TotalCount,
    /// Gemini's `promptTokenCount`.
    PromptCount,
    /// Gemini's `candidatesTokenCount`.
    CandidatesCount,
    /// Gemini's `thoughtsTokenCount`.
    ThoughtsCount,
    /// Ollama's `prompt_eval_count`.
    PromptEval,
    /// Ollama's `eval_count`.
    Eval,
    /// Gemini's `candidates`.
    Candidates,
    /// Gemini's `finishReason`, in a candidate.
    FinishReason,
}

impl Name {
    #[inline(always)]
    pub(super) fn of(key: Option<&[u8]>) -> Name {
        // By length, then as fixed-size arrays: compared inline, with no
        // call to a general slice comparison per key.
        fn is<const N: usize>(key: &[u8], name: &[u8; N]) -> bool {
            key.first_chunk::<N>() == Some(name)
        }
        let Some(key) = key else {
            return Name::Other;
        };
        match key.len() {
            5 if is(key, b"usage") => Name::Usage,
            7 if is(key, b"message") => Name::Message,
            8 if is(key, b"response") => Name::Response,
            10 if is(key, b"eval_count") => Name::Eval,
            10 if is(key, b"candidates") => Name::Candidates,
            12 if is(key, b"total_tokens") => Name::Total,
            12 if is(key, b"input_tokens") => Name::Input,
            12 if is(key, b"finishReason") => Name::FinishReason,
            13 if is(key, b"prompt_tokens") => Name::Prompt,
            13 if is(key, b"output_tokens") => Name::Output,
            13 if is(key, b"usageMetadata") => Name::Metadata,
            15 if is(key, b"totalTokenCount") => Name::TotalCount,
            16 if is(key, b"promptTokenCount") => Name::PromptCount,
            17 if is(key, b"completion_tokens") => Name::Completion,
            17 if is(key, b"prompt_eval_count") => Name::PromptEval,
            18 if is(key, b"thoughtsTokenCount") => Name::ThoughtsCount,
            20 if is(key, b"candidatesTokenCount") => Name::CandidatesCount,
            _ => Name::Other,
        }
    }

    /// [`Name::of`] as a call, for every key but those of the top-level
    /// object that [`Doc::members`] reads (the many): one copy of the
    /// comparisons for the keys of nested objects, keys with escapes or
    /// cut by a chunk's end, rather than one inlined into each place.
    ///
    /// [`Doc::members`]: super::doc::Doc::members
    #[inline(never)]
    pub(super) fn of_outlined(key: Option<&[u8]>) -> Name {
        Name::of(key)
    }

    /// Whether this key is a token field of the usage kept in `slot`: each
    /// API's names only in its own place, so that one API's name elsewhere
    /// is content.
    pub(super) fn counts_in(self, slot: Slot) -> bool {
        match slot {
            Slot::Top | Slot::Message | Slot::Response => matches!(
                self,
                Name::Total | Name::Prompt | Name::Completion | Name::Input | Name::Output
            ),
            Slot::Gemini => matches!(
                self,
                Name::TotalCount | Name::PromptCount | Name::CandidatesCount | Name::ThoughtsCount
            ),
            Slot::Ollama => matches!(self, Name::PromptEval | Name::Eval),
        }
    }
}

/// One token field of a usage object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Count {
    /// Not reported (or reported as something other than a number, such as
    /// `null`).
    #[default]
    Absent,
    Tokens(u64),
    /// A number that cannot be a token count.
    Bad,
}

impl Count {
    fn get(self) -> Option<u64> {
        match self {
            Count::Tokens(n) => Some(n),
            Count::Absent | Count::Bad => None,
        }
    }
}

/// The token fields of one usage object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) total: Count,
    prompt: Count,
    completion: Count,
    input: Count,
    output: Count,
    /// Gemini's thinking tokens, reported apart from its output and
    /// charged with it.
    thoughts: Count,
}

impl Record {
    pub(super) const EMPTY: Record = Record {
        total: Count::Absent,
        prompt: Count::Absent,
        completion: Count::Absent,
        input: Count::Absent,
        output: Count::Absent,
        thoughts: Count::Absent,
    };

    fn fields(&self) -> [Count; 6] {
        [
            self.total,
            self.prompt,
            self.completion,
            self.input,
            self.output,
            self.thoughts,
        ]
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fields().iter().all(|c| *c == Count::Absent)
    }

    pub(super) fn is_bad(&self) -> bool {
        self.fields().contains(&Count::Bad)
    }

    pub(super) fn set(&mut self, name: Name, count: Count) {
        let field = match name {
            Name::Total | Name::TotalCount => &mut self.total,
            Name::Prompt | Name::PromptCount | Name::PromptEval => &mut self.prompt,
            Name::Completion | Name::CandidatesCount | Name::Eval => &mut self.completion,
            Name::Input => &mut self.input,
            Name::Output => &mut self.output,
            Name::ThoughtsCount => &mut self.thoughts,
            Name::Other
            | Name::Usage
            | Name::Message
            | Name::Response
            | Name::Metadata
            | Name::Candidates
            | Name::FinishReason => return,
        };
        *field = count;
    }

    /// Input tokens: OpenAI chat's name first, then the other APIs'.
    pub(super) fn input(&self) -> Option<u64> {
        self.prompt.get().or(self.input.get())
    }

    /// Output tokens, with Gemini's thinking tokens added when reported
    /// (saturating: a count that large is refused when it is summed).
    pub(super) fn output(&self) -> Option<u64> {
        let output = self.completion.get().or(self.output.get());
        match self.thoughts.get() {
            Some(thoughts) => Some(output.unwrap_or(0).saturating_add(thoughts)),
            None => output,
        }
    }
}

/// Adds input and output into a total; `None` on overflow, which is no
/// usage anyone was charged.
pub(super) fn sum(input: Option<u64>, output: Option<u64>) -> Option<u64> {
    input.unwrap_or(0).checked_add(output.unwrap_or(0))
}

/// Where a usage object hangs: top-level `usage`, `message.usage`,
/// `response.usage`, Gemini's top-level `usageMetadata`, and Ollama's
/// counts in the top-level object itself, in the order they are
/// preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Top = 0,
    Message = 1,
    Response = 2,
    Gemini = 3,
    Ollama = 4,
}

impl Slot {
    /// Whether a stream event with usage here carries the stream's final
    /// count: OpenAI chat's usage chunk and Anthropic's `message_delta`
    /// (top-level `usage`), the Responses API's `response.completed`
    /// (`response.usage`) and Ollama's `done` line do; Anthropic's
    /// `message_start` (`message.usage`) is followed by the output count,
    /// and every Gemini chunk carries a running `usageMetadata`: only the
    /// chunk whose candidate has a `finishReason` carries the last.
    pub(super) fn is_final(self) -> bool {
        matches!(self, Slot::Top | Slot::Response | Slot::Ollama)
    }
}
