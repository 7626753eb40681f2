//! Which configuration keys a plugin asked for, to name the ones it never
//! reads.
//!
//! A misspelt key (`deny_satus`) would otherwise be ignored without a word
//! and its default used. The kit cannot list a plugin's keys, but it sees
//! every lookup: while a configuration compiles, each object opened and
//! each key asked of it is recorded here, and a key the object holds that
//! nobody asked for is unknown. The record lives only during that compile,
//! on the configuring thread, so a request never touches it.

use std::cell::RefCell;

/// One object of the configuration: where it starts in the parsed tape
/// (its identity while the tape lives), its path for messages, the keys it
/// holds and the keys asked of it.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) at: usize,
    pub(crate) path: String,
    pub(crate) keys: Vec<String>,
    pub(crate) asked: Vec<String>,
}

/// A key of the configuration that nothing asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    /// Its dotted path, as in error messages.
    pub(crate) path: String,
    /// The key asked of the same object that it is most likely a typo of.
    pub(crate) nearest: Option<String>,
}

impl Unknown {
    /// The reason, for a log line or an error: "unknown key (did you mean
    /// `deny_status`?)".
    pub(crate) fn reason(&self) -> String {
        match &self.nearest {
            Some(key) => format!("unknown key (did you mean `{key}`?)"),
            None => "unknown key".to_owned(),
        }
    }
}

/// The keys of the recorded objects that nobody asked for, in document
/// order.
pub(crate) fn unknown(opened: &[Opened]) -> Vec<Unknown> {
    let mut unknown = Vec::new();
    for object in opened {
        for key in object.keys.iter().filter(|k| !object.asked.contains(k)) {
            let path = if object.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", object.path)
            };
            unknown.push(Unknown {
                path,
                nearest: nearest(key, &object.asked).map(str::to_owned),
            });
        }
    }
    unknown
}

thread_local! {
    static RECORD: RefCell<Option<Vec<Opened>>> = const { RefCell::new(None) };
}

/// Runs `compile` with lookups recorded, and returns its result with the
/// objects it opened.
pub(crate) fn recording<R>(compile: impl FnOnce() -> R) -> (R, Vec<Opened>) {
    RECORD.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let result = compile();
    let opened = RECORD.with(|r| r.borrow_mut().take()).unwrap_or_default();
    (result, opened)
}

/// Notes that the object at `at`, holding `keys`, was opened with path
/// `path`.
pub(crate) fn opened<'k>(
    at: usize,
    path: impl FnOnce() -> String,
    keys: impl Iterator<Item = &'k str>,
) {
    RECORD.with(|r| {
        if let Some(record) = r.borrow_mut().as_mut() {
            if !record.iter().any(|o| o.at == at) {
                record.push(Opened {
                    at,
                    path: path(),
                    keys: keys.map(str::to_owned).collect(),
                    asked: Vec::new(),
                });
            }
        }
    });
}

/// Notes that `key` was asked of the object at `at`.
pub(crate) fn asked(at: usize, key: &str) {
    RECORD.with(|r| {
        if let Some(object) = r
            .borrow_mut()
            .as_mut()
            .and_then(|record| record.iter_mut().find(|o| o.at == at))
        {
            if !object.asked.iter().any(|k| k == key) {
                object.asked.push(key.to_owned());
            }
        }
    });
}

/// The known key closest to `unknown` in spelling, when one is close
/// enough to be a likely typo: at most a third of its length apart in
/// edits (and at least two edits allowed). Lengths and edits count bytes:
/// configuration keys are ASCII, and bytes keep the comparison to two
/// rows on the stack instead of decoded characters on the heap.
pub(crate) fn nearest<'k>(unknown: &str, known: &'k [String]) -> Option<&'k str> {
    let allowed = (unknown.len() / 3).max(2);
    let mut best: Option<(usize, &'k str)> = None;
    for key in known {
        let distance = edit_distance(unknown.as_bytes(), key.as_bytes());
        if distance <= allowed && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, key));
        }
    }
    best.map(|(_, key)| key)
}

/// The longest key the typo check compares; a longer one has no nearest.
const LONGEST_KEY: usize = 64;

/// Levenshtein distance over bytes (keys are ASCII in practice), in two
/// rows on the stack; keys past [`LONGEST_KEY`] bytes are never near.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    if a.len() > LONGEST_KEY || b.len() > LONGEST_KEY {
        return usize::MAX;
    }
    let mut previous = [0usize; LONGEST_KEY + 1];
    let mut current = [0usize; LONGEST_KEY + 1];
    for (j, slot) in previous.iter_mut().enumerate() {
        *slot = j;
    }
    for (i, ca) in a.iter().enumerate() {
        let mut left = i + 1;
        current[0] = left;
        for ((cb, pair), slot) in b
            .iter()
            .zip(previous.windows(2))
            .zip(current.iter_mut().skip(1))
        {
            let (diagonal, above) = match pair {
                [d, u] => (*d, *u),
                _ => (usize::MAX - 1, usize::MAX - 1),
            };
            left = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(left + 1);
            *slot = left;
        }
        previous = current;
    }
    previous.get(b.len()).copied().unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance(b"deny_satus", b"deny_status"), 1);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance(b"abc", b""), 3);
        assert_eq!(edit_distance(&[b'x'; 65], b"x"), usize::MAX);
        assert_eq!(edit_distance(b"same", b"same"), 0);
    }

    #[test]
    fn a_typo_finds_its_key_and_a_stranger_finds_none() {
        let known = vec!["deny_status".to_owned(), "header".to_owned()];
        assert_eq!(nearest("deny_satus", &known), Some("deny_status"));
        assert_eq!(nearest("headr", &known), Some("header"));
        assert_eq!(nearest("timeout", &known), None);
    }

    #[test]
    fn nothing_is_recorded_outside_a_compile() {
        opened(1, || "x".into(), ["k"].into_iter());
        asked(1, "k");
        let ((), opened) = recording(|| asked(1, "k"));
        assert!(opened.is_empty());
    }

    #[test]
    fn keys_nobody_asked_for_are_unknown_with_their_path() {
        let ((), record) = recording(|| {
            opened(1, String::new, ["header", "deny_satus"].into_iter());
            opened(2, || "redis".into(), ["timeout", "tmeout"].into_iter());
            asked(1, "header");
            asked(1, "deny_status");
            asked(2, "timeout");
        });
        let found = unknown(&record);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path, "deny_satus");
        assert_eq!(
            found[0].reason(),
            "unknown key (did you mean `deny_status`?)"
        );
        assert_eq!(found[1].path, "redis.tmeout");
        assert_eq!(found[1].nearest.as_deref(), Some("timeout"));
    }
}
