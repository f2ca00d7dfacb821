//! The Anthropic Messages dialect: `POST /v1/messages` with a system prompt,
//! content blocks (`text`, `tool_use`, `tool_result`, `thinking`), tools,
//! `stop_sequences`, `thinking`, and streaming as Anthropic's event sequence
//! (`message_start`, `content_block_start`, `content_block_delta`,
//! `content_block_stop`, `message_delta`, `message_stop`).

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::chat::{
    prepare, ChatRequest, Fields, Message, OutputFormat, Role, Thinking, ToolChoice,
};
use super::error::AnthropicError;
use super::parse::Delta;
use super::stream::{chat_events, collect, ChatEvent, ChatStream, Finish};
use super::tools::{Tool, ToolCall};
use super::validate::{sampling, RawSampling};
use super::{arrived, new_id, parse, ApiError, AppState};

const FIELDS: Fields = Fields {
    messages: "messages",
    tools: "tools",
    tool_choice: "tool_choice",
    format: "output_format",
};

#[derive(Debug, Deserialize)]
pub(super) struct MessagesRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    system: Option<SystemPrompt>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    thinking: Option<InThinking>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SystemPrompt {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block as sent; the fields of every type, checked by type.
#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct InThinking {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    budget_tokens: Option<i64>,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid(message, param)
}

fn block_text(blocks: &[Block], at: &str) -> Result<String, ApiError> {
    let mut out = String::new();
    for (j, b) in blocks.iter().enumerate() {
        match (b.kind.as_str(), &b.text) {
            ("text", Some(t)) => out.push_str(t),
            (kind, _) => {
                return Err(bad(
                    format!("`{at}[{j}]` has type `{kind}`; only `text` blocks are supported here"),
                    at,
                ))
            }
        }
    }
    Ok(out)
}

fn messages_of(req: &MessagesRequest) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    match &req.system {
        None => {}
        Some(SystemPrompt::Text(t)) => out.push(Message::new(Role::System, t.clone())),
        Some(SystemPrompt::Blocks(b)) => {
            out.push(Message::new(Role::System, block_text(b, "system")?))
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(bad(
                    format!("`messages[{i}].role` is `{other}`; expected `user` or `assistant`"),
                    "messages",
                ))
            }
        };
        let blocks = match &m.content {
            Content::Text(t) => {
                out.push(Message::new(role, t.clone()));
                continue;
            }
            Content::Blocks(b) => b,
        };
        let mut msg = Message::new(role, String::new());
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages[{i}].content[{j}]");
            match b.kind.as_str() {
                "text" => msg.content.push_str(b.text.as_deref().unwrap_or("")),
                "thinking" if role == Role::Assistant => {
                    msg.reasoning = Some(b.thinking.clone().unwrap_or_default())
                }
                "redacted_thinking" if role == Role::Assistant => {}
                "tool_use" if role == Role::Assistant => {
                    let (Some(id), Some(name)) = (&b.id, &b.name) else {
                        return Err(bad(
                            format!("`{at}` (tool_use) needs `id` and `name`"),
                            "messages",
                        ));
                    };
                    msg.tool_calls.push(ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        arguments: b.input.clone().unwrap_or_else(|| json!({})).to_string(),
                    });
                }
                "tool_result" if role == Role::User => {
                    let Some(id) = &b.tool_use_id else {
                        return Err(bad(
                            format!("`{at}` (tool_result) needs `tool_use_id`"),
                            "messages",
                        ));
                    };
                    let mut text = match &b.content {
                        None => String::new(),
                        Some(Content::Text(t)) => t.clone(),
                        Some(Content::Blocks(bs)) => block_text(bs, &format!("{at}.content"))?,
                    };
                    if b.is_error == Some(true) {
                        text = format!("Error: {text}");
                    }
                    let mut r = Message::new(Role::Tool, text);
                    r.tool_call_id = Some(id.clone());
                    out.push(r);
                }
                kind => {
                    return Err(bad(
                        format!(
                            "`{at}` has type `{kind}`, which is not supported in a `{}` message",
                            m.role
                        ),
                        "messages",
                    ))
                }
            }
        }
        if !msg.content.is_empty() || !msg.tool_calls.is_empty() || msg.reasoning.is_some() {
            out.push(msg);
        }
    }
    Ok(out)
}

fn chat_request(req: &MessagesRequest) -> Result<ChatRequest, ApiError> {
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(bad(
                format!("`tools[{i}].type` is `{kind}`; only custom tools (with `input_schema`) are supported"),
                "tools",
            ));
        }
        tools.push(Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t
                .input_schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    let (tool_choice, parallel) = match &req.tool_choice {
        None => (ToolChoice::Auto, true),
        Some(c) => {
            let parallel = !c.disable_parallel_tool_use.unwrap_or(false);
            let choice = match (c.kind.as_str(), &c.name) {
                ("auto", _) => ToolChoice::Auto,
                ("any", _) => ToolChoice::Required,
                ("none", _) => ToolChoice::None,
                ("tool", Some(n)) => ToolChoice::Function(n.clone()),
                ("tool", None) => {
                    return Err(bad(
                        "`tool_choice` of type `tool` needs a `name`",
                        "tool_choice",
                    ))
                }
                (other, _) => {
                    return Err(bad(
                        format!(
                        "`tool_choice.type` is `{other}`; expected `auto`, `any`, `tool` or `none`"
                    ),
                        "tool_choice",
                    ))
                }
            };
            (choice, parallel)
        }
    };
    let mut thinking = Thinking::default();
    if let Some(t) = &req.thinking {
        match t.kind.as_str() {
            "enabled" => thinking.enable = Some((true, "thinking")),
            "disabled" => thinking.enable = Some((false, "thinking")),
            other => {
                return Err(bad(
                    format!("`thinking.type` is `{other}`; expected `enabled` or `disabled`"),
                    "thinking",
                ))
            }
        }
    }
    Ok(ChatRequest {
        messages: messages_of(req)?,
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        format: OutputFormat::Text,
        thinking,
        fields: FIELDS,
    })
}

/// Anthropic's tool-use ids start with `toolu_`.
fn tool_use_id(call_id: &str) -> String {
    format!("toolu_{}", call_id.strip_prefix("call_").unwrap_or(call_id))
}

fn stop_reason(f: &Finish) -> (&'static str, Option<String>) {
    match f {
        Finish::Stop => ("end_turn", None),
        Finish::StopSequence(s) => ("stop_sequence", Some(s.clone())),
        Finish::Length => ("max_tokens", None),
        Finish::ToolCalls => ("tool_use", None),
    }
}

/// Arguments as the `input` object (the raw text if they do not parse).
fn input_of(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
}

pub(super) async fn messages(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let start = arrived();
    let req: MessagesRequest = parse(body)?;
    let Some(max_tokens) = req.max_tokens else {
        return Err(bad("`max_tokens` is required", "max_tokens").into());
    };
    if let Some(t) = req.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(bad(
                format!("`temperature` is `{t}`; it must be between 0 and 1"),
                "temperature",
            )
            .into());
        }
    }
    let s = sampling(RawSampling {
        prefix: "",
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: None,
        max_tokens: Some((max_tokens, "max_tokens")),
        until_full: false,
        stop: req.stop_sequences.clone().unwrap_or_default(),
        stop_field: "stop_sequences",
        max_stop: None,
        logprobs: None,
    })?;
    let stream = req.stream.unwrap_or(false);
    let model = req.model.clone().unwrap_or_else(|| st.cfg.model_id.clone());
    let chat = chat_request(&req)?;
    let prepared = st
        .blocking(move |p, tok, limits| prepare(chat, s, p, tok, limits))
        .await?;
    let input_tokens = prepared.generation.prompt.len() as u32;
    let events = st.submit(prepared.generation)?;
    let tok = st.backend.tokenizer()?;
    let events = chat_events(events, prepared.parser, tok, st.metrics.clone(), start);
    let id = new_id("msg_");
    if stream {
        return Ok(sse(events, id, model, input_tokens).into_response());
    }
    let a = collect(events).await?;
    let mut content = Vec::new();
    if !a.reasoning.is_empty() {
        content.push(json!({"type": "thinking", "thinking": a.reasoning, "signature": ""}));
    }
    if !a.content.is_empty() || a.calls.is_empty() {
        content.push(json!({"type": "text", "text": a.content}));
    }
    for (id, name, args) in &a.calls {
        content.push(json!({"type": "tool_use", "id": tool_use_id(id), "name": name, "input": input_of(args)}));
    }
    let (reason, seq) = stop_reason(a.finish.as_ref().unwrap_or(&Finish::Stop));
    Ok(Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": {"input_tokens": a.usage.prompt_tokens, "output_tokens": a.usage.completion_tokens},
    }))
    .into_response())
}

/// The block being streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    /// A tool use block, by call index.
    Tool(usize),
}

struct Blocks {
    open: Open,
    /// Index of the open block (blocks count from 0).
    index: usize,
    started: bool,
}

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

impl Blocks {
    /// Closes the open block if it is not `want`, and opens `want`.
    fn switch(&mut self, want: Open, start_block: Value, out: &mut Vec<SseEvent>) {
        if self.open == want {
            return;
        }
        self.close(out);
        if self.started {
            self.index += 1;
        }
        self.started = true;
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": start_block}),
        ));
        self.open = want;
    }

    fn close(&mut self, out: &mut Vec<SseEvent>) {
        if self.open == Open::Thinking {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "signature_delta", "signature": ""}}),
            ));
        }
        if self.open != Open::None {
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
        }
        self.open = Open::None;
    }

    fn delta(&self, delta: Value) -> SseEvent {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        )
    }

    fn render(&mut self, ev: ChatEvent, out: &mut Vec<SseEvent>) -> bool {
        match ev {
            ChatEvent::Logprobs(_) => {}
            ChatEvent::Delta(Delta::Content(t)) => {
                self.switch(Open::Text, json!({"type": "text", "text": ""}), out);
                out.push(self.delta(json!({"type": "text_delta", "text": t})));
            }
            ChatEvent::Delta(Delta::Reasoning(t)) => {
                self.switch(
                    Open::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                );
                out.push(self.delta(json!({"type": "thinking_delta", "thinking": t})));
            }
            ChatEvent::Delta(Delta::ToolCallStart { index, id, name }) => {
                self.switch(
                    Open::Tool(index),
                    json!({"type": "tool_use", "id": tool_use_id(&id), "name": name, "input": {}}),
                    out,
                );
            }
            ChatEvent::Delta(Delta::ToolCallArgs { index, args }) => {
                if self.open == Open::Tool(index) {
                    out.push(self.delta(json!({"type": "input_json_delta", "partial_json": args})));
                }
            }
            ChatEvent::Done { finish, usage } => {
                if !self.started {
                    self.switch(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                self.close(out);
                let (reason, seq) = stop_reason(&finish);
                out.push(event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                           "usage": {"output_tokens": usage.completion_tokens}}),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
                return false;
            }
            ChatEvent::Error(e) => {
                out.push(event("error", e.body_in(super::Dialect::Anthropic)));
                return false;
            }
        }
        true
    }
}

fn sse(
    events: ChatStream,
    id: String,
    model: String,
    input_tokens: u32,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let first = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 0}}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    let blocks = Blocks {
        open: Open::None,
        index: 0,
        started: false,
    };
    let body = futures::stream::unfold(Some((events, blocks)), |state| async move {
        let (mut events, mut blocks) = state?;
        let mut out = Vec::new();
        let more = match events.next().await {
            Some(ev) => blocks.render(ev, &mut out),
            None => false,
        };
        Some((
            futures::stream::iter(out),
            if more { Some((events, blocks)) } else { None },
        ))
    })
    .flatten();
    let stream = futures::stream::iter(first).chain(body).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
