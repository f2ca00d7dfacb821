//! The YAML scanner of the source map (yaml-rust2 events with marks).

use std::collections::HashMap;

use super::{escape, Spot};
use crate::load::Location;

pub(super) fn yaml_spots(
    text: &str,
    rename: &dyn Fn(&str) -> String,
    spots: &mut HashMap<String, Spot>,
) {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    enum Frame {
        /// A mapping at `pointer` (None: inside a complex key, not recorded);
        /// `key` is Some between a key and its value.
        Map {
            pointer: Option<String>,
            key: Option<(Option<String>, Location)>,
            /// No key seen yet: a block mapping's start event is marked after
            /// its first key, so the first key's position replaces it.
            first: bool,
        },
        Seq {
            pointer: Option<String>,
            next: usize,
        },
    }

    struct Receiver<'r> {
        rename: &'r dyn Fn(&str) -> String,
        spots: &'r mut HashMap<String, Spot>,
        stack: Vec<Frame>,
        done: bool,
    }

    impl Receiver<'_> {
        /// Called at the start of every node; returns the node's pointer
        /// (None when not recorded) or Err(()) for a mapping key.
        fn start(
            &mut self,
            mark: Location,
            scalar_key: Option<&str>,
        ) -> Result<Option<String>, ()> {
            match self.stack.last_mut() {
                None => {
                    if self.done {
                        return Ok(None);
                    }
                    self.done = true;
                    Ok(Some(String::new()))
                }
                Some(Frame::Seq { pointer, next }) => {
                    let child = pointer.as_ref().map(|p| format!("{p}/{next}"));
                    *next += 1;
                    Ok(child)
                }
                Some(Frame::Map {
                    pointer,
                    key,
                    first,
                }) => match key.take() {
                    None => {
                        if std::mem::take(first) {
                            if let Some(spot) = pointer.as_ref().and_then(|p| self.spots.get_mut(p))
                            {
                                spot.value = mark;
                            }
                        }
                        let child = match (pointer.as_ref(), scalar_key) {
                            (Some(p), Some(k)) => {
                                Some(format!("{p}/{}", escape(&(self.rename)(k))))
                            }
                            _ => None,
                        };
                        *key = Some((child, mark));
                        Err(())
                    }
                    Some((child, key_mark)) => {
                        if let Some(child) = &child {
                            self.spots.insert(
                                child.clone(),
                                Spot {
                                    key: Some(key_mark),
                                    value: mark,
                                },
                            );
                        }
                        Ok(child)
                    }
                },
            }
        }

        fn record(&mut self, pointer: &Option<String>, mark: Location) {
            if let Some(pointer) = pointer {
                self.spots.entry(pointer.clone()).or_insert(Spot {
                    key: None,
                    value: mark,
                });
            }
        }
    }

    impl MarkedEventReceiver for Receiver<'_> {
        fn on_event(&mut self, event: Event, marker: Marker) {
            let mark = Location {
                line: marker.line(),
                column: marker.col() + 1,
            };
            match event {
                Event::Scalar(value, ..) => {
                    if let Ok(pointer) = self.start(mark, Some(&value)) {
                        self.record(&pointer, mark);
                    }
                }
                Event::Alias(_) => {
                    if let Ok(pointer) = self.start(mark, None) {
                        self.record(&pointer, mark);
                    }
                }
                Event::SequenceStart(..) => {
                    let pointer = self.start(mark, None).unwrap_or(None);
                    self.record(&pointer, mark);
                    self.stack.push(Frame::Seq { pointer, next: 0 });
                }
                Event::MappingStart(..) => {
                    let pointer = self.start(mark, None).unwrap_or(None);
                    self.record(&pointer, mark);
                    self.stack.push(Frame::Map {
                        pointer,
                        key: None,
                        first: true,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
        }
    }

    let mut receiver = Receiver {
        rename,
        spots,
        stack: Vec::new(),
        done: false,
    };
    let _ = Parser::new_from_str(text).load(&mut receiver, false);
}
