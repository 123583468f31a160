//! A bounded tail of a child's output, and its complete lines for the log.

use std::collections::VecDeque;

/// The last `max` bytes pushed.
#[derive(Debug)]
pub(super) struct Tail {
    bytes: VecDeque<u8>,
    max: usize,
}

impl Tail {
    pub(super) fn new(max: usize) -> Tail {
        Tail {
            bytes: VecDeque::new(),
            max,
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.max)..];
        let overflow = (self.bytes.len() + bytes.len()).saturating_sub(self.max);
        self.bytes.drain(..overflow);
        self.bytes.extend(bytes);
    }

    /// A line of our own, on a line of its own.
    pub(super) fn push_line(&mut self, line: &str) {
        if self.bytes.back().is_some_and(|&b| b != b'\n') {
            self.push(b"\n");
        }
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// The tail as text: invalid UTF-8 replaced, a character cut at the
    /// start dropped, at most `max` bytes.
    pub(super) fn into_string(self) -> String {
        let bytes: Vec<u8> = self.bytes.into();
        // A multi-byte character cut by the bound: drop its remains.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        let text = String::from_utf8_lossy(&bytes[start..]);
        // Replacement characters are longer than the bytes they replace.
        let mut cut = text.len().saturating_sub(self.max);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text[cut..].to_owned()
    }
}

/// Splits a stream into lines (for the log); a line longer than
/// `LINE_MAX` is passed on in pieces.
#[derive(Debug, Default)]
pub(super) struct Lines {
    partial: Vec<u8>,
}

const LINE_MAX: usize = 4096;

impl Lines {
    pub(super) fn push(&mut self, bytes: &[u8], mut line: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' || self.partial.len() >= LINE_MAX {
                line(String::from_utf8_lossy(&self.partial).trim_end_matches('\r'));
                self.partial.clear();
                if b == b'\n' {
                    continue;
                }
            }
            self.partial.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes() {
        let mut t = Tail::new(10);
        t.push(b"0123456");
        t.push(b"789abc");
        assert_eq!(t.into_string(), "3456789abc");
        let mut t = Tail::new(4);
        t.push(b"a much longer chunk");
        assert_eq!(t.into_string(), "hunk");
    }

    #[test]
    fn cut_characters_and_invalid_bytes() {
        let mut t = Tail::new(5);
        t.push("aéé".as_bytes()); // 61 c3 a9 c3 a9: the bound cuts into the first é
        t.push("é".as_bytes());
        assert_eq!(t.into_string(), "éé");
        let mut t = Tail::new(4);
        t.push(b"\xff\xffab");
        let s = t.into_string();
        assert!(s.len() <= 4 && s.ends_with("ab"), "{s:?}");
    }

    #[test]
    fn own_lines_start_on_a_new_line() {
        let mut t = Tail::new(100);
        t.push(b"Notice: no newline");
        t.push_line("pvc-agent: killed");
        assert_eq!(t.into_string(), "Notice: no newline\npvc-agent: killed\n");
    }

    #[test]
    fn lines_across_chunks() {
        let mut l = Lines::default();
        let mut seen = Vec::new();
        l.push(b"Notice: a\r\nInfo: b", |s| seen.push(s.to_owned()));
        l.push(b"c\n", |s| seen.push(s.to_owned()));
        assert_eq!(seen, ["Notice: a", "Info: bc"]);
        let mut long = Vec::new();
        l.push(&vec![b'x'; LINE_MAX + 1], |s| long.push(s.len()));
        assert_eq!(long, [LINE_MAX]);
    }
}
