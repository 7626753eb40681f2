//! Log lines formatted on the stack, and only when the level is enabled.
//!
//! The proxy's log level is read once per configuration and cached, so a
//! disabled `debug` line costs one comparison: its `format_args!` is never
//! formatted. An enabled line is formatted into a fixed stack buffer (long
//! lines are cut, marked with `...`) and handed to the host without a heap
//! allocation.

use crate::host::{Host, LogLevel};
use core::fmt::{self, Write};

const LINE_CAPACITY: usize = 1024;
const CUT_MARK: &str = "...";

/// A log line under construction, on the stack.
struct Line {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
    cut: bool,
}

impl Line {
    fn new() -> Self {
        Line {
            bytes: [0; LINE_CAPACITY],
            len: 0,
            cut: false,
        }
    }

    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or_default();
        // Only whole `str`s or char-boundary cuts of them are ever copied in.
        core::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = LINE_CAPACITY - CUT_MARK.len() - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        if take < s.len() {
            self.cut = true;
            if let Some(dst) = self.bytes.get_mut(self.len..self.len + CUT_MARK.len()) {
                dst.copy_from_slice(CUT_MARK.as_bytes());
                self.len += CUT_MARK.len();
            }
        }
        Ok(())
    }
}

/// Writes `<plugin>: <message>` at `level` if `level` is at least `enabled`.
pub(crate) fn write<H: Host>(
    host: &mut H,
    enabled: LogLevel,
    level: LogLevel,
    plugin: &str,
    message: fmt::Arguments<'_>,
) {
    if level < enabled {
        return;
    }
    let mut line = Line::new();
    // Writing into `Line` never fails; it cuts instead.
    let _ = write!(line, "{plugin}: {message}");
    host.log(level, line.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut line = Line::new();
        let long = "é".repeat(LINE_CAPACITY);
        write!(line, "{long}").unwrap();
        let s = line.as_str();
        assert!(s.ends_with(CUT_MARK));
        assert!(s.len() <= LINE_CAPACITY);
    }
}
