//! Token bytes to client text: whole UTF-8 characters only, stop strings cut.
//!
//! Invariant: text handed out never contains a stop string nor any part of
//! one that might still complete, and never splits a UTF-8 character (a
//! character whose bytes are spread over several tokens is sent once all its
//! bytes are in; bytes that can never form one become U+FFFD).

pub struct TextStream {
    stop: Vec<String>,
    /// Undecoded bytes: the start of a character still incomplete.
    pending: Vec<u8>,
    /// Decoded text not handed out yet (it may be the start of a stop string).
    held: String,
}

impl TextStream {
    pub fn new(stop: Vec<String>) -> TextStream {
        TextStream {
            stop,
            pending: Vec::new(),
            held: String::new(),
        }
    }

    /// Add one token's bytes. Returns the text that can be sent now, and
    /// the stop string produced, if any (the text returned then ends just
    /// before it, and generation ends).
    pub fn push(&mut self, bytes: &[u8]) -> (String, Option<String>) {
        self.pending.extend_from_slice(bytes);
        self.decode();
        // The earliest stop string found ends the text.
        if let Some((at, stop)) = self
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at)
        {
            let out = self.held[..at].to_owned();
            let stop = stop.clone();
            self.held.clear();
            self.pending.clear();
            return (out, Some(stop));
        }
        let hold = self
            .stop
            .iter()
            .map(|s| longest_prefix_at_end(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - hold;
        let out = self.held[..cut].to_owned();
        self.held.drain(..cut);
        (out, None)
    }

    /// Generation ended without a stop string: the rest.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
        out
    }

    fn decode(&mut self) {
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.held
                        .push_str(std::str::from_utf8(&self.pending[..valid]).unwrap());
                    match e.error_len() {
                        // An incomplete character at the end: wait for more.
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }
}

/// Bytes of the longest proper prefix of `stop` that `text` ends with.
fn longest_prefix_at_end(text: &str, stop: &str) -> usize {
    stop.char_indices()
        .map(|(i, _)| i)
        .skip(1)
        .filter(|&k| text.ends_with(&stop[..k]))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let mut t = TextStream::new(stop.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            let (s, stopped) = t.push(p);
            out.push(s);
            if stopped.is_some() {
                return (out, true, String::new());
            }
        }
        let rest = t.finish();
        (out, false, rest)
    }

    #[test]
    fn a_character_split_across_tokens_is_sent_whole() {
        // "é" is C3 A9; "🦊" is F0 9F A6 8A.
        let (out, stopped, rest) =
            run(&[], &[b"caf\xC3", b"\xA9 ", b"\xF0\x9F", b"\xA6", b"\x8A!"]);
        assert_eq!(out, vec!["caf", "é ", "", "", "🦊!"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _, rest) = run(&[], &[b"a\xFFb", b"\xC3"]);
        assert_eq!(out, vec!["a\u{FFFD}b", ""]);
        assert_eq!(rest, "\u{FFFD}");
    }

    #[test]
    fn stop_strings_are_cut_even_across_tokens() {
        let (out, stopped, _) = run(&["</s>", "END"], &[b"hello <", b"/", b"s> more"]);
        assert_eq!(out, vec!["hello ", "", ""]);
        assert!(stopped);
        // The earliest stop string wins.
        let (out, stopped, _) = run(&["b", "a"], &[b"xxab"]);
        assert_eq!(out, vec!["xx"]);
        assert!(stopped);
    }

    #[test]
    fn a_false_start_of_a_stop_string_is_released() {
        let (out, stopped, rest) = run(&["STOP"], &[b"go ST", b"OR", b"E ST"]);
        assert_eq!(out, vec!["go ", "STOR", "E "]);
        assert!(!stopped);
        assert_eq!(rest, "ST");
    }

    #[test]
    fn multibyte_stop_strings_hold_back_on_character_boundaries() {
        let (out, stopped, _) = run(&["→→"], &["a→".as_bytes(), "→b".as_bytes()]);
        assert_eq!(out, vec!["a", ""]);
        assert!(stopped);
    }
}
