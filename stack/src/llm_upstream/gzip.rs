//! Gzip for the upstream's answers: a stream compressed as it goes (one
//! stored deflate block per piece, so each piece decodes before the next
//! exists), and decoding with the system's `gzip`.

use std::io::Write;

/// A gzip stream written as it goes: deflate's stored blocks, one per
/// piece, so every piece can be sent (and decoded) before the next exists.
#[derive(Debug)]
pub struct Gzip {
    crc: u32,
    len: u32,
    started: bool,
}

impl Default for Gzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gzip {
    pub fn new() -> Self {
        Gzip {
            crc: !0,
            len: 0,
            started: false,
        }
    }

    /// The bytes that carry `data` (the header first, on the first call).
    pub fn piece(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            // Magic, deflate, no flags, no time, no extra flags, unknown OS.
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        }
        for block in data.chunks(0xffff) {
            let len = block.len() as u16;
            out.push(0); // not the last block; stored
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(block);
        }
        for &b in data {
            self.crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.crc & 1).wrapping_neg();
                self.crc = (self.crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        self.len = self.len.wrapping_add(data.len() as u32);
        out
    }

    /// The last bytes: an empty final block and the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = self.piece(&[]);
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        out.extend_from_slice(&(!self.crc).to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }

    /// `data` as one gzip member.
    pub fn whole(data: &[u8]) -> Vec<u8> {
        let mut gzip = Gzip::new();
        let mut out = gzip.piece(data);
        out.extend_from_slice(&gzip.finish());
        out
    }
}

/// Decodes a gzip body with the system's `gzip -dc` (any deflate, as
/// Envoy's compressor writes it).
///
/// # Panics
/// If `gzip` is missing or the bytes are not gzip.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let gzip = crate::require_tool("gzip", "gzip");
    let mut child = std::process::Command::new(gzip)
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run gzip -dc: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("gzip -dc failed: {e}"));
    let _ = writer.join();
    assert!(
        output.status.success(),
        "gzip -dc refused the body: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
