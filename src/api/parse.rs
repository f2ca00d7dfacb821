//! The model's output text split into what clients see: answer text,
//! reasoning text and tool calls, incrementally, so every dialect can stream
//! them (tool-call arguments as deltas, as OpenAI does).
//!
//! Formats: reasoning between `<think>`/`</think>` (or `[THINK]`/`[/THINK]`);
//! tool calls as Hermes/Qwen `<tool_call>{"name", "arguments"}</tool_call>`,
//! Llama 3.x JSON (`{"name", "parameters"}`, optionally after
//! `<|python_tag|>`), Mistral `[TOOL_CALLS]` (a JSON array, or
//! `name[ARGS]{...}`), and gpt-oss harmony channels (`analysis` is
//! reasoning, `final` the answer, `commentary to=functions.NAME` a call).
//!
//! Invariant guarded here: the concatenation of every delta of one kind is
//! exactly what a non-streaming parse of the whole text gives, and no text of
//! a marker (or of a marker that might still complete) is ever handed out as
//! answer or reasoning text.

/// How the model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSyntax {
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block
    /// per call (Hermes, Qwen 2.5/3, and skulk's generic prompt).
    Hermes,
    /// `{"name": ..., "parameters": {...}}` as the whole answer, optionally
    /// after `<|python_tag|>` (Llama 3.1-3.3).
    Llama3,
    /// `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (Mistral v3)
    /// or `[TOOL_CALLS]name[ARGS]{...}` (Mistral v11 and later).
    Mistral,
}

/// Where reasoning text sits in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinkSyntax {
    pub open: &'static str,
    pub close: &'static str,
    /// The prompt already opened the reasoning block (the template wrote
    /// `<think>`), so the output starts inside it.
    pub starts_inside: bool,
}

impl ThinkSyntax {
    pub const THINK: (&'static str, &'static str) = ("<think>", "</think>");
    pub const BRACKETS: (&'static str, &'static str) = ("[THINK]", "[/THINK]");
}

/// What the parser looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParserSpec {
    /// Everything is answer text.
    Plain,
    /// Reasoning and/or tool calls marked in the text.
    Marked {
        think: Option<ThinkSyntax>,
        tools: Option<ToolSyntax>,
    },
    /// gpt-oss harmony channels; `tools`: a `commentary to=functions.X`
    /// message is a call (else its text is answer text).
    Harmony { tools: bool },
}

/// One piece of parsed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    Content(String),
    Reasoning(String),
    /// A new tool call (`index` counts from 0 per answer).
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// More of the call's arguments (JSON text).
    ToolCallArgs {
        index: usize,
        args: String,
    },
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";

const H_CHANNEL: &str = "<|channel|>";
const H_MESSAGE: &str = "<|message|>";
const H_START: &str = "<|start|>";
const H_CONSTRAIN: &str = "<|constrain|>";
const H_ENDS: [&str; 3] = ["<|end|>", "<|call|>", "<|return|>"];

/// A new tool-call id, as OpenAI writes them (`call_` and 24 characters).
pub fn new_call_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let id: String = (0..24)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("call_{id}")
}

#[derive(Debug)]
enum State {
    Text,
    Think,
    /// Inside a tool-call region: `syntax`, text of the region so far.
    Calls {
        syntax: Region,
        buf: String,
    },
    /// Harmony: the header of the next message, up to `<|message|>`.
    HHeader,
    /// Harmony: a message body of this kind.
    HBody(HKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    /// Between `<tool_call>` and `</tool_call>`: one call object.
    Hermes,
    /// The whole answer (Llama 3.x): call objects separated by `;`.
    Bare,
    /// After `[TOOL_CALLS]`.
    Mistral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HKind {
    Reasoning,
    Content,
    /// A call: its index and the arguments emitted so far.
    Call(usize),
}

/// Incremental parser for one answer.
#[derive(Debug)]
pub struct OutputParser {
    spec: ParserSpec,
    state: State,
    /// Text not parsed yet (may hold the start of a marker).
    pending: String,
    /// Answer text was handed out (a Llama 3.x call must come first).
    said_something: bool,
    /// Strip whitespace at the start of the next answer text (after a
    /// reasoning block).
    trim_next_content: bool,
    /// Calls started: (id, name, arguments emitted so far).
    calls: Vec<(String, String, usize)>,
    /// Calls of the current region already complete (by region offset).
    region_calls_done: usize,
    /// Whitespace between the answer text and a call region.
    before_call: String,
}

impl OutputParser {
    pub fn new(spec: ParserSpec) -> OutputParser {
        let state = match &spec {
            ParserSpec::Marked { think: Some(t), .. } if t.starts_inside => State::Think,
            ParserSpec::Harmony { .. } => State::HHeader,
            _ => State::Text,
        };
        OutputParser {
            spec,
            state,
            pending: String::new(),
            said_something: false,
            trim_next_content: false,
            calls: Vec::new(),
            region_calls_done: 0,
            before_call: String::new(),
        }
    }

    /// Tool calls started so far.
    pub fn n_calls(&self) -> usize {
        self.calls.len()
    }

    /// Feed text; returns what can be said now.
    pub fn push(&mut self, text: &str) -> Vec<Delta> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        self.run(false, &mut out);
        out
    }

    /// The output ended: everything still held.
    pub fn finish(&mut self) -> Vec<Delta> {
        let mut out = Vec::new();
        self.run(true, &mut out);
        out
    }

    fn run(&mut self, end: bool, out: &mut Vec<Delta>) {
        if matches!(self.spec, ParserSpec::Plain) {
            let t = std::mem::take(&mut self.pending);
            self.content(t, out);
            return;
        }
        if matches!(self.spec, ParserSpec::Harmony { .. }) {
            return self.run_harmony(end, out);
        }
        loop {
            let progressed = match std::mem::replace(&mut self.state, State::Text) {
                State::Text => self.step_text(end, out),
                State::Think => self.step_think(end, out),
                State::Calls { syntax, buf } => self.step_calls(syntax, buf, end, out),
                other => {
                    self.state = other;
                    false
                }
            };
            if !progressed {
                return;
            }
        }
    }

    fn think(&self) -> Option<&ThinkSyntax> {
        match &self.spec {
            ParserSpec::Marked { think, .. } => think.as_ref(),
            _ => None,
        }
    }

    fn tools(&self) -> Option<ToolSyntax> {
        match &self.spec {
            ParserSpec::Marked { tools, .. } => *tools,
            _ => None,
        }
    }

    /// Markers that leave the text state, with what each leads to.
    fn openers(&self) -> Vec<(&'static str, Option<Region>)> {
        let mut m = Vec::new();
        if let Some(t) = self.think() {
            m.push((t.open, None));
        }
        match self.tools() {
            Some(ToolSyntax::Hermes) => m.push((HERMES_OPEN, Some(Region::Hermes))),
            Some(ToolSyntax::Llama3) => m.push((PYTHON_TAG, Some(Region::Bare))),
            Some(ToolSyntax::Mistral) => m.push((MISTRAL_CALLS, Some(Region::Mistral))),
            None => {}
        }
        m
    }

    fn content(&mut self, mut t: String, out: &mut Vec<Delta>) {
        // Whitespace around calls is not an answer.
        if !self.calls.is_empty() && t.trim().is_empty() {
            return;
        }
        if self.trim_next_content {
            let trimmed = t.trim_start();
            if trimmed.is_empty() {
                return;
            }
            t = trimmed.to_string();
            self.trim_next_content = false;
        }
        if t.is_empty() {
            return;
        }
        if !t.trim().is_empty() {
            self.said_something = true;
        }
        match out.last_mut() {
            Some(Delta::Content(c)) => c.push_str(&t),
            _ => out.push(Delta::Content(t)),
        }
    }

    fn reasoning(&mut self, t: &str, out: &mut Vec<Delta>) {
        if t.is_empty() {
            return;
        }
        match out.last_mut() {
            Some(Delta::Reasoning(c)) => c.push_str(t),
            _ => out.push(Delta::Reasoning(t.to_string())),
        }
    }

    fn step_text(&mut self, end: bool, out: &mut Vec<Delta>) -> bool {
        // Llama 3.x: a call is the whole answer, written as bare JSON.
        if self.tools() == Some(ToolSyntax::Llama3) && !self.said_something {
            let lead = self.pending.trim_start();
            if lead.starts_with('{') {
                let ws = self.pending.len() - lead.len();
                let buf = self.pending.split_off(ws);
                self.pending.clear();
                self.state = State::Calls {
                    syntax: Region::Bare,
                    buf,
                };
                self.region_calls_done = 0;
                return true;
            }
            if lead.is_empty() && !end {
                return false;
            }
        }
        let openers = self.openers();
        let found = openers
            .iter()
            .filter_map(|(m, r)| self.pending.find(m).map(|at| (at, *m, *r)))
            .min_by_key(|(at, _, _)| *at);
        match found {
            Some((at, marker, region)) => {
                let mut before: String = self.pending.drain(..at).collect();
                self.pending.drain(..marker.len());
                if region.is_some() {
                    // Whitespace that only separates the text from a call
                    // (given back if the call is not one).
                    let keep = before.trim_end().len();
                    self.before_call = before.split_off(keep);
                }
                self.content(before, out);
                match region {
                    None => self.state = State::Think,
                    Some(syntax) => {
                        self.state = State::Calls {
                            syntax,
                            buf: String::new(),
                        };
                        self.region_calls_done = 0;
                    }
                }
                true
            }
            None => {
                let hold = if end {
                    0
                } else {
                    let marker = openers
                        .iter()
                        .map(|(m, _)| partial_suffix(&self.pending, m))
                        .max()
                        .unwrap_or(0);
                    // Trailing whitespace waits: it is dropped if a call
                    // comes next.
                    let rest = &self.pending[..self.pending.len() - marker];
                    let ws = if self.tools().is_some() {
                        rest.len() - rest.trim_end().len()
                    } else {
                        0
                    };
                    marker + ws
                };
                let cut = self.pending.len() - hold;
                let t: String = self.pending.drain(..cut).collect();
                self.content(t, out);
                self.state = State::Text;
                false
            }
        }
    }

    fn step_think(&mut self, end: bool, out: &mut Vec<Delta>) -> bool {
        let close = self.think().map_or("</think>", |t| t.close);
        match self.pending.find(close) {
            Some(at) => {
                let r: String = self.pending.drain(..at).collect();
                self.pending.drain(..close.len());
                self.reasoning(&r, out);
                self.trim_next_content = true;
                self.state = State::Text;
                true
            }
            None => {
                let hold = if end {
                    0
                } else {
                    partial_suffix(&self.pending, close)
                };
                let cut = self.pending.len() - hold;
                let r: String = self.pending.drain(..cut).collect();
                self.reasoning(&r, out);
                self.state = State::Think;
                false
            }
        }
    }

    fn step_calls(
        &mut self,
        syntax: Region,
        mut buf: String,
        end: bool,
        out: &mut Vec<Delta>,
    ) -> bool {
        let close = match syntax {
            Region::Hermes => Some(HERMES_CLOSE),
            Region::Bare | Region::Mistral => None,
        };
        let (closed, take) = match close.and_then(|c| self.pending.find(c)) {
            Some(at) => (true, at),
            None => {
                let hold = match close {
                    Some(c) if !end => partial_suffix(&self.pending, c),
                    _ => 0,
                };
                (false, self.pending.len() - hold)
            }
        };
        buf.extend(self.pending.drain(..take));
        if closed {
            self.pending.drain(..close.unwrap().len());
        }
        let done = closed || end;
        let parsed = self.scan_region(syntax, &buf, done, out);
        if done {
            if parsed {
                self.trim_next_content = true;
                self.before_call.clear();
            }
            if !parsed {
                // Not a call after all: the text was the answer.
                let opener = match syntax {
                    Region::Hermes => HERMES_OPEN,
                    Region::Bare => "",
                    Region::Mistral => MISTRAL_CALLS,
                };
                let mut t = format!("{}{opener}{buf}", std::mem::take(&mut self.before_call));
                if closed {
                    t.push_str(HERMES_CLOSE);
                }
                self.content(t, out);
            }
            self.state = State::Text;
            return closed;
        }
        self.state = State::Calls { syntax, buf };
        false
    }

    /// Emits the calls in `buf` (a region's text so far) past those already
    /// emitted; false when the region holds no call at all.
    fn scan_region(&mut self, syntax: Region, buf: &str, done: bool, out: &mut Vec<Delta>) -> bool {
        let base = self.calls.len() - self.region_calls_done.min(self.calls.len());
        let scans = match syntax {
            Region::Hermes => vec![scan_call(buf, 0)],
            Region::Bare => scan_call_list(buf, b';'),
            Region::Mistral => {
                let lead = buf.trim_start();
                if lead.starts_with('[') {
                    // v3: a JSON array of call objects.
                    let at = buf.len() - lead.len() + 1;
                    offset(scan_call_list(&buf[at..], b','), at)
                } else {
                    scan_mistral_v11(buf)
                }
            }
        };
        let mut any = false;
        for (i, scan) in scans.iter().enumerate() {
            let Some(name) = &scan.name else { continue };
            let Some(args) = scan.args.as_ref() else {
                continue;
            };
            any = true;
            let index = base + i;
            if index >= self.calls.len() {
                let id = new_call_id();
                out.push(Delta::ToolCallStart {
                    index,
                    id: id.clone(),
                    name: name.clone(),
                });
                self.calls.push((id, name.clone(), 0));
                self.region_calls_done += 1;
            }
            let text = args.text(buf, done);
            let sent = self.calls[index].2;
            if text.len() > sent && text.is_char_boundary(sent) {
                out.push(Delta::ToolCallArgs {
                    index,
                    args: text[sent..].to_string(),
                });
                self.calls[index].2 = text.len();
            }
        }
        any || self.region_calls_done > 0
    }

    // --- harmony ---------------------------------------------------------

    fn run_harmony(&mut self, end: bool, out: &mut Vec<Delta>) {
        loop {
            match std::mem::replace(&mut self.state, State::Text) {
                State::HHeader => {
                    // Output that does not start a harmony message is
                    // answer text.
                    let lead = self.pending.trim_start();
                    let maybe = [H_CHANNEL, H_START, H_MESSAGE]
                        .iter()
                        .any(|m| m.starts_with(lead) || lead.starts_with(m));
                    if !maybe {
                        self.state = State::HBody(HKind::Content);
                        continue;
                    }
                    match self.pending.find(H_MESSAGE) {
                        Some(at) => {
                            let h: String = self.pending.drain(..at).collect();
                            self.pending.drain(..H_MESSAGE.len());
                            let kind = self.harmony_kind(&h, out);
                            self.state = State::HBody(kind);
                        }
                        None => {
                            if end {
                                // A header cut off: nothing to say.
                                self.pending.clear();
                            }
                            self.state = State::HHeader;
                            return;
                        }
                    }
                }
                State::HBody(kind) => {
                    let found = H_ENDS
                        .iter()
                        .filter_map(|m| self.pending.find(m).map(|at| (at, *m)))
                        .min_by_key(|(at, _)| *at);
                    let (take, closed) = match found {
                        Some((at, m)) => (at, Some(m)),
                        None => {
                            let hold = if end {
                                0
                            } else {
                                H_ENDS
                                    .iter()
                                    .chain([H_START].iter())
                                    .map(|m| partial_suffix(&self.pending, m))
                                    .max()
                                    .unwrap_or(0)
                            };
                            (self.pending.len() - hold, None)
                        }
                    };
                    let body: String = self.pending.drain(..take).collect();
                    match &kind {
                        HKind::Reasoning => self.reasoning(&body, out),
                        HKind::Content => {
                            // A message of plain text may still run into a
                            // new header (`<|start|>`).
                            match body.find(H_START) {
                                Some(at) if closed.is_none() => {
                                    let (a, b) = body.split_at(at);
                                    self.content(a.to_string(), out);
                                    self.pending.insert_str(0, b);
                                    self.state = State::HHeader;
                                    continue;
                                }
                                _ => self.content(body, out),
                            }
                        }
                        HKind::Call(i) => {
                            if !body.is_empty() {
                                out.push(Delta::ToolCallArgs {
                                    index: *i,
                                    args: body,
                                });
                            }
                        }
                    }
                    match closed {
                        Some(m) => {
                            self.pending.drain(..m.len());
                            self.state = State::HHeader;
                        }
                        None => {
                            self.state = State::HBody(kind);
                            return;
                        }
                    }
                }
                other => {
                    self.state = other;
                    return;
                }
            }
        }
    }

    fn harmony_kind(&mut self, header: &str, out: &mut Vec<Delta>) -> HKind {
        let header = header.replace(H_START, " ").replace(H_CONSTRAIN, " ");
        let channel = header
            .split(H_CHANNEL)
            .nth(1)
            .and_then(|c| c.split_whitespace().next())
            .unwrap_or("");
        let recipient = header
            .split_whitespace()
            .find_map(|w| w.strip_prefix("to="))
            .map(str::to_string);
        let tools = matches!(self.spec, ParserSpec::Harmony { tools: true });
        match (channel, recipient) {
            ("analysis", None) => HKind::Reasoning,
            (_, Some(r)) if tools => {
                let name = r.strip_prefix("functions.").unwrap_or(&r).to_string();
                let index = self.calls.len();
                let id = new_call_id();
                out.push(Delta::ToolCallStart {
                    index,
                    id: id.clone(),
                    name: name.clone(),
                });
                self.calls.push((id, name, 0));
                HKind::Call(index)
            }
            ("analysis", Some(_)) => HKind::Reasoning,
            _ => HKind::Content,
        }
    }
}

/// Bytes at the end of `text` that are a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    marker
        .char_indices()
        .map(|(i, _)| i)
        .skip(1)
        .filter(|&k| text.ends_with(&marker[..k]))
        .max()
        .unwrap_or(0)
}

/// Where a call's arguments are in a region's text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArgsSpan {
    start: usize,
    /// End when the value is complete.
    end: Option<usize>,
    /// The value is a JSON string holding the arguments' text.
    stringified: bool,
}

impl ArgsSpan {
    /// The arguments' JSON text known so far (a stringified value only once
    /// complete, decoded).
    fn text(&self, buf: &str, done: bool) -> String {
        if self.stringified {
            return match self.end {
                Some(end) => {
                    serde_json::from_str::<String>(&buf[self.start..end]).unwrap_or_default()
                }
                None => String::new(),
            };
        }
        let end = self.end.unwrap_or(buf.len());
        let mut t = &buf[self.start..end];
        if self.end.is_none() && done {
            t = t.trim_end();
        }
        t.to_string()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CallScan {
    name: Option<String>,
    args: Option<ArgsSpan>,
    /// Offset after the call object, when complete.
    end: Option<usize>,
}

/// Scans a call object `{"name": ..., "arguments"|"parameters": ...}`
/// starting at `at` (after whitespace) in `buf`, as far as it goes.
fn scan_call(buf: &str, at: usize) -> CallScan {
    let b = buf.as_bytes();
    let mut scan = CallScan::default();
    let mut i = skip_ws(b, at);
    if b.get(i) != Some(&b'{') {
        return scan;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            None => return scan,
            Some(b'}') => {
                scan.end = Some(i + 1);
                return scan;
            }
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(b'"') => {}
            Some(_) => return scan,
        }
        let Some((key, after)) = json_string(buf, i) else {
            return scan;
        };
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return scan;
        }
        i = skip_ws(b, i + 1);
        if i >= b.len() {
            return scan;
        }
        match key.as_str() {
            "name" => match json_string(buf, i) {
                Some((name, after)) => {
                    scan.name = Some(name);
                    i = after;
                }
                None => return scan,
            },
            "arguments" | "parameters" => {
                let end = skip_value(b, i);
                scan.args = Some(ArgsSpan {
                    start: i,
                    end: end.ok().flatten(),
                    stringified: b[i] == b'"',
                });
                match end {
                    Ok(Some(e)) => i = e,
                    _ => return scan,
                }
            }
            _ => match skip_value(b, i) {
                Ok(Some(e)) => i = e,
                _ => return scan,
            },
        }
    }
}

/// Call objects separated by `sep` (and whitespace).
fn scan_call_list(buf: &str, sep: u8) -> Vec<CallScan> {
    let b = buf.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        i = skip_ws(b, i);
        if i >= b.len() || b[i] != b'{' {
            return out;
        }
        let scan = scan_call(buf, i);
        let end = scan.end;
        out.push(scan);
        let Some(e) = end else { return out };
        i = skip_ws(b, e);
        if b.get(i) == Some(&sep) {
            i += 1;
        } else {
            return out;
        }
    }
}

/// Mistral v11: `name[ARGS]{...}` repeated, each after `[TOOL_CALLS]`.
fn scan_mistral_v11(buf: &str) -> Vec<CallScan> {
    let b = buf.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let rest = &buf[i..];
        let Some(at) = rest.find(MISTRAL_ARGS) else {
            return out;
        };
        let name = rest[..at].trim().to_string();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return out;
        }
        let start = skip_ws(b, i + at + MISTRAL_ARGS.len());
        if start >= b.len() {
            return out;
        }
        let end = skip_value(b, start);
        out.push(CallScan {
            name: Some(name),
            args: Some(ArgsSpan {
                start,
                end: end.ok().flatten(),
                stringified: false,
            }),
            end: end.ok().flatten(),
        });
        let Ok(Some(e)) = end else { return out };
        i = skip_ws(b, e);
        match buf[i..].strip_prefix(MISTRAL_CALLS) {
            Some(_) => i += MISTRAL_CALLS.len(),
            None => return out,
        }
    }
}

/// Scans of a slice starting at `at`, moved to offsets of the whole text.
fn offset(scans: Vec<CallScan>, at: usize) -> Vec<CallScan> {
    scans
        .into_iter()
        .map(|mut s| {
            if let Some(a) = &mut s.args {
                a.start += at;
                a.end = a.end.map(|e| e + at);
            }
            s.end = s.end.map(|e| e + at);
            s
        })
        .collect()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// A complete JSON string at `i`: its value and the offset after it.
fn json_string(buf: &str, i: usize) -> Option<(String, usize)> {
    let b = buf.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = match skip_value(b, i) {
        Ok(Some(e)) => e,
        _ => return None,
    };
    serde_json::from_str::<String>(&buf[i..end])
        .ok()
        .map(|s| (s, end))
}

/// The end of the JSON value starting at `i`: `Ok(Some(end))` when
/// complete, `Ok(None)` when the text stops inside it, `Err` when it is not
/// JSON.
fn skip_value(b: &[u8], i: usize) -> Result<Option<usize>, ()> {
    let mut depth = 0usize;
    let mut j = i;
    let mut in_string = false;
    let mut escaped = false;
    // A scalar (number, true, false, null) ends at a delimiter.
    let scalar = !matches!(b.get(i), Some(b'{' | b'[' | b'"'));
    if scalar {
        while j < b.len()
            && !matches!(
                b[j],
                b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t' | b';'
            )
        {
            if !(b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'+' | b'.')) {
                return Err(());
            }
            j += 1;
        }
        return if j == b.len() {
            Ok(None)
        } else if j == i {
            Err(())
        } else {
            Ok(Some(j))
        };
    }
    while j < b.len() {
        let c = b[j];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
                if depth == 0 {
                    return Ok(Some(j + 1));
                }
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Err(());
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Ok(Some(j + 1));
                    }
                }
                _ => {}
            }
        }
        j += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` fed in pieces of `step` bytes (at char boundaries) and
    /// returns (content, reasoning, calls as (name, args)).
    fn parse(spec: ParserSpec, text: &str, step: usize) -> (String, String, Vec<(String, String)>) {
        let mut p = OutputParser::new(spec);
        let mut deltas = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let mut j = (i + step).min(text.len());
            while !text.is_char_boundary(j) {
                j += 1;
            }
            deltas.extend(p.push(&text[i..j]));
            i = j;
        }
        deltas.extend(p.finish());
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        for d in deltas {
            match d {
                Delta::Content(c) => content.push_str(&c),
                Delta::Reasoning(r) => reasoning.push_str(&r),
                Delta::ToolCallStart { index, name, id } => {
                    assert_eq!(index, calls.len());
                    assert!(id.starts_with("call_") && id.len() == 29, "{id}");
                    calls.push((name, String::new()));
                }
                Delta::ToolCallArgs { index, args } => calls[index].1.push_str(&args),
            }
        }
        (content, reasoning, calls)
    }

    /// Every piece size gives the same result as the whole text at once.
    fn check(spec: ParserSpec, text: &str) -> (String, String, Vec<(String, String)>) {
        let whole = parse(spec.clone(), text, text.len().max(1));
        for step in [1, 2, 3, 5, 7, 13] {
            assert_eq!(
                parse(spec.clone(), text, step),
                whole,
                "step {step} of {text:?}"
            );
        }
        whole
    }

    fn marked(think: bool, tools: Option<ToolSyntax>) -> ParserSpec {
        ParserSpec::Marked {
            think: think.then_some(ThinkSyntax {
                open: "<think>",
                close: "</think>",
                starts_inside: false,
            }),
            tools,
        }
    }

    #[test]
    fn hermes_calls_are_split_from_the_text_around_them() {
        let (c, r, calls) = check(
            marked(true, Some(ToolSyntax::Hermes)),
            "<think>Need the weather.</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
        );
        assert_eq!(r, "Need the weather.");
        assert_eq!(c, "Let me check.");
        assert_eq!(
            calls,
            vec![
                (
                    "get_weather".into(),
                    "{\"city\": \"Paris\", \"days\": [1, 2]}".into()
                ),
                ("get_time".into(), "{}".into())
            ]
        );
    }

    #[test]
    fn a_broken_hermes_block_is_answer_text() {
        let (c, _, calls) = check(
            marked(false, Some(ToolSyntax::Hermes)),
            "a <tool_call>not json</tool_call> b",
        );
        assert!(calls.is_empty());
        assert_eq!(c, "a <tool_call>not json</tool_call> b");
    }

    #[test]
    fn an_unfinished_call_keeps_its_arguments_so_far() {
        let (_, _, calls) = check(
            marked(false, Some(ToolSyntax::Hermes)),
            "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"xy",
        );
        assert_eq!(calls, vec![("f".into(), "{\"a\": \"xy".into())]);
    }

    #[test]
    fn stringified_arguments_are_decoded() {
        let (_, _, calls) = check(
            marked(false, Some(ToolSyntax::Hermes)),
            r#"<tool_call>{"arguments": "{\"a\": 1}", "name": "f"}</tool_call>"#,
        );
        assert_eq!(calls, vec![("f".into(), "{\"a\": 1}".into())]);
    }

    #[test]
    fn llama3_bare_json_and_python_tag() {
        let (c, _, calls) = check(
            marked(false, Some(ToolSyntax::Llama3)),
            " {\"name\": \"search\", \"parameters\": {\"q\": \"rust\"}}",
        );
        assert_eq!(c, "");
        assert_eq!(calls, vec![("search".into(), "{\"q\": \"rust\"}".into())]);
        let (_, _, calls) = check(
            marked(false, Some(ToolSyntax::Llama3)),
            "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": 1}}",
        );
        assert_eq!(
            calls,
            vec![("a".into(), "{}".into()), ("b".into(), "{\"x\": 1}".into())]
        );
        // JSON that is not a call is the answer.
        let (c, _, calls) = check(marked(false, Some(ToolSyntax::Llama3)), "{\"answer\": 42}");
        assert!(calls.is_empty());
        assert_eq!(c, "{\"answer\": 42}");
        // Text first: no call parsing of later braces.
        let (c, _, calls) = check(
            marked(false, Some(ToolSyntax::Llama3)),
            "Sure: {\"name\": \"x\", \"parameters\": {}}",
        );
        assert!(calls.is_empty());
        assert_eq!(c, "Sure: {\"name\": \"x\", \"parameters\": {}}");
    }

    #[test]
    fn mistral_array_and_v11_forms() {
        let (c, _, calls) = check(
            marked(false, Some(ToolSyntax::Mistral)),
            "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"k\": [1]}}, {\"name\": \"b\", \"arguments\": {}}]",
        );
        assert_eq!(c, "");
        assert_eq!(
            calls,
            vec![
                ("a".into(), "{\"k\": [1]}".into()),
                ("b".into(), "{}".into())
            ]
        );
        let (_, _, calls) = check(
            marked(false, Some(ToolSyntax::Mistral)),
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]get_time[ARGS]{}",
        );
        assert_eq!(
            calls,
            vec![
                ("get_weather".into(), "{\"city\": \"Oslo\"}".into()),
                ("get_time".into(), "{}".into())
            ]
        );
    }

    #[test]
    fn harmony_channels() {
        let (c, r, calls) = check(
            ParserSpec::Harmony { tools: true },
            "<|channel|>analysis<|message|>User wants weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"SF\"}<|call|>",
        );
        assert_eq!(r, "User wants weather.");
        assert_eq!(c, "");
        assert_eq!(
            calls,
            vec![("get_weather".into(), "{\"city\":\"SF\"}".into())]
        );
        let (c, r, calls) = check(
            ParserSpec::Harmony { tools: false },
            "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>",
        );
        assert_eq!((c.as_str(), r.as_str()), ("Hello!", "Think."));
        assert!(calls.is_empty());
        // Not harmony at all: plain text.
        let (c, _, _) = check(ParserSpec::Harmony { tools: true }, "Just text.");
        assert_eq!(c, "Just text.");
    }

    #[test]
    fn reasoning_opened_by_the_prompt() {
        let spec = ParserSpec::Marked {
            think: Some(ThinkSyntax {
                open: "<think>",
                close: "</think>",
                starts_inside: true,
            }),
            tools: None,
        };
        let (c, r, _) = check(spec, "step 1, step 2</think>\nAnswer: 4");
        assert_eq!(r, "step 1, step 2");
        assert_eq!(c, "Answer: 4");
    }

    #[test]
    fn a_marker_prefix_at_the_end_is_released_at_finish() {
        let (c, _, _) = check(marked(true, Some(ToolSyntax::Hermes)), "x <tool_ca");
        assert_eq!(c, "x <tool_ca");
        let (c, _, _) = check(marked(true, None), "a <thin");
        assert_eq!(c, "a <thin");
    }
}
