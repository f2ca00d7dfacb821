//! Parser messages in plain words: positions stripped (the location says
//! where), serde_yaml_ng's path prefixes dropped, and the position of a
//! duplicate YAML key.

use super::{Location, MAX_DEPTH};

/// Messages raised while building the value, which serde_yaml_ng prefixes
/// with the path of the value (`a[0][0]...: `); the position already says
/// where.
const OWN_MESSAGES: [&str; 9] = [
    "duplicate key",
    "the document nests",
    "the document expands",
    "the number",
    "the integer",
    "tagged ",
    "keys must be",
    "a key is null",
    "binary values",
];

/// A serde_yaml_ng message in plain words.
pub(super) fn yaml_message(message: &str) -> String {
    let message = strip_positions(message);
    for own in OWN_MESSAGES {
        if let Some(at) = message.find(own) {
            if at == 0 || message[..at].ends_with(": ") {
                return message[at..].to_string();
            }
        }
    }
    match message.as_str() {
        "repetition limit exceeded" => {
            "aliases (`*name`) expand the document too far (serde_yaml_ng's repetition limit)"
                .to_string()
        }
        "recursion limit exceeded" => format!("the document nests deeper than {MAX_DEPTH} levels"),
        _ => message,
    }
}

/// The position of the first key repeated within one YAML mapping.
pub(super) fn yaml_duplicate_key(text: &str) -> Option<Location> {
    use std::collections::HashSet;
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    /// Per open collection: for a mapping, its keys so far and whether the
    /// next node is a key.
    enum Frame {
        Map { keys: HashSet<String>, at_key: bool },
        Seq,
    }
    struct Receiver {
        stack: Vec<Frame>,
        found: Option<Location>,
    }
    impl Receiver {
        /// A node starts; returns whether it is a mapping key.
        fn node(&mut self) -> bool {
            match self.stack.last_mut() {
                Some(Frame::Map { at_key, .. }) => {
                    let is_key = *at_key;
                    *at_key = !*at_key;
                    is_key
                }
                _ => false,
            }
        }
    }
    impl MarkedEventReceiver for Receiver {
        fn on_event(&mut self, event: Event, marker: Marker) {
            if self.found.is_some() {
                return;
            }
            match event {
                // `node()` runs for every scalar (it advances the key/value state).
                Event::Scalar(value, ..) if self.node() => {
                    if let Some(Frame::Map { keys, .. }) = self.stack.last_mut() {
                        if !keys.insert(value) {
                            self.found = Some(Location {
                                line: marker.line(),
                                column: marker.col() + 1,
                            });
                        }
                    }
                }
                Event::Alias(_) => {
                    self.node();
                }
                Event::MappingStart(..) => {
                    self.node();
                    self.stack.push(Frame::Map {
                        keys: HashSet::new(),
                        at_key: true,
                    });
                }
                Event::SequenceStart(..) => {
                    self.node();
                    self.stack.push(Frame::Seq);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
        }
    }
    let mut receiver = Receiver {
        stack: Vec::new(),
        found: None,
    };
    let _ = Parser::new_from_str(text).load(&mut receiver, false);
    receiver.found
}

/// Removes ` at line N column M` and ` at position N` from a parser message
/// (the location is reported separately).
pub(super) fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        let skipped = skip_position(tail);
        if skipped == 0 {
            out.push_str(" at ");
        }
        rest = &tail[skipped..];
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// Length of a leading `line N column M` or `position N` in `text`, or 0.
fn skip_position(text: &str) -> usize {
    fn number(text: &str) -> usize {
        text.bytes().take_while(u8::is_ascii_digit).count()
    }
    if let Some(rest) = text.strip_prefix("line ") {
        let n = number(rest);
        if n > 0 {
            if let Some(after) = rest[n..].strip_prefix(" column ") {
                let m = number(after);
                if m > 0 {
                    return "line ".len() + n + " column ".len() + m;
                }
            }
        }
    } else if let Some(rest) = text.strip_prefix("position ") {
        let n = number(rest);
        if n > 0 {
            return "position ".len() + n;
        }
    }
    0
}
