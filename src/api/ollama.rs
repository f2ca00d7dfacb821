//! The Ollama dialect: `/api/chat` and `/api/generate` (streamed as NDJSON
//! by default, as Ollama does), `/api/tags`, `/api/show`, `/api/version`
//! and `/api/ps`: enough for Open WebUI and the `ollama` Python client.
//!
//! Ollama options that change sampling in ways skulk does not implement
//! (`repeat_penalty`, `min_p`, `mirostat`, ...) are refused with a 400
//! naming the option unless set to their neutral value; resource options
//! (`num_ctx`, `num_thread`, `num_gpu`, ...) are ignored, as the plan fixes
//! them.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::chat::{
    prepare, ChatRequest, Fields, Message, OutputFormat, Role, Thinking, ToolChoice,
};
use super::error::OllamaError;
use super::parse::{Delta, ParserSpec};
use super::profile::Renderer;
use super::stream::{chat_events, collect, ChatEvent, ChatStream, Finish};
use super::tools::{Tool, ToolCall};
use super::validate::{finish, parse_effort, sampling, RawSampling, Sampling};
use super::{arrived, parse, ApiError, AppState};
use crate::output::civil_from_days;

const FIELDS: Fields = Fields {
    messages: "messages",
    tools: "tools",
    tool_choice: "tool_choice",
    format: "format",
};

/// Options that change sampling, with their neutral value.
const UNSUPPORTED_OPTIONS: &[(&str, f64)] = &[
    ("repeat_penalty", 1.0),
    ("presence_penalty", 0.0),
    ("frequency_penalty", 0.0),
    ("min_p", 0.0),
    ("typical_p", 1.0),
    ("tfs_z", 1.0),
    ("mirostat", 0.0),
];

#[derive(Debug, Deserialize)]
pub(super) struct ChatBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Vec<InMessage>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    tool_calls: Option<Vec<InToolCall>>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InToolCall {
    function: InFunctionCall,
}

#[derive(Debug, Deserialize)]
struct InFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: InFunction,
}

#[derive(Debug, Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct GenerateBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    context: Option<Vec<Value>>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<i64>,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid(message, param)
}

/// `logprobs`/`top_logprobs` as the number of top tokens asked for.
fn logprobs_of(on: Option<bool>, top: Option<i64>) -> Result<Option<u8>, ApiError> {
    let max = i64::from(crate::engine::MAX_TOP_LOGPROBS);
    match (on.unwrap_or(false), top) {
        (false, None | Some(0)) => Ok(None),
        (false, Some(_)) => Err(bad("`top_logprobs` needs `logprobs: true`", "top_logprobs")),
        (true, None) => Ok(Some(0)),
        (true, Some(n)) if (0..=max).contains(&n) => Ok(Some(n as u8)),
        (true, Some(n)) => Err(bad(
            format!("`top_logprobs` is `{n}`; it must be between 0 and {max}"),
            "top_logprobs",
        )),
    }
}

/// `options.<name>` read by `get`: absent or null is `None`; a value `get`
/// refuses is an error saying it expected `what`.
fn option<T>(
    o: &Map<String, Value>,
    name: &str,
    what: &str,
    get: fn(&Value) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => get(v).map(Some).ok_or_else(|| {
            bad(
                format!("`options.{name}` is `{v}`; expected {what}"),
                &format!("options.{name}"),
            )
        }),
    }
}

/// `options` checked into sampling settings.
fn options_sampling(
    options: &Option<Map<String, Value>>,
    logprobs: Option<u8>,
) -> Result<Sampling, ApiError> {
    let empty = Map::new();
    let o = options.as_ref().unwrap_or(&empty);
    for (name, neutral) in UNSUPPORTED_OPTIONS {
        if let Some(v) = o.get(*name) {
            if v.as_f64() != Some(*neutral) && !v.is_null() {
                return Err(bad(
                    format!("`options.{name}` is `{v}`; skulk does not implement it (leave it out or set `{neutral}`)"),
                    &format!("options.{name}"),
                ));
            }
        }
    }
    let num = |name: &str| option(o, name, "a number", Value::as_f64);
    let int = |name: &str| option(o, name, "an integer", Value::as_i64);
    let num_predict = int("num_predict")?;
    let max_tokens = match num_predict {
        // -1: no limit, -2: until the context is full; either way the
        // context ends it.
        None | Some(-1) | Some(-2) => None,
        Some(n) => Some((n, "num_predict")),
    };
    let stop = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("`options.stop` must be a list of strings", "options.stop"))?,
        Some(v) => {
            return Err(bad(
                format!("`options.stop` is `{v}`; expected a list of strings"),
                "options.stop",
            ))
        }
    };
    sampling(RawSampling {
        prefix: "options.",
        temperature: num("temperature")?,
        top_p: num("top_p")?,
        top_k: int("top_k")?,
        seed: int("seed")?,
        max_tokens,
        until_full: matches!(num_predict, Some(-1) | Some(-2)),
        stop,
        stop_field: "stop",
        max_stop: None,
        logprobs,
    })
}

fn format_of(v: &Option<Value>) -> Result<OutputFormat, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(OutputFormat::Text),
        Some(Value::String(s)) if s.is_empty() => Ok(OutputFormat::Text),
        Some(Value::String(s)) if s == "json" => Ok(OutputFormat::JsonObject),
        Some(schema @ Value::Object(_)) => Ok(OutputFormat::JsonSchema(schema.clone())),
        Some(other) => Err(bad(
            format!("`format` is `{other}`; expected `\"json\"` or a JSON schema"),
            "format",
        )),
    }
}

fn think_of(v: &Option<Value>) -> Result<Thinking, ApiError> {
    let mut t = Thinking::default();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Bool(on)) => t.enable = Some((*on, "think")),
        Some(Value::String(level)) => t.effort = Some((parse_effort(level, "think")?, "think")),
        Some(other) => {
            return Err(bad(
                format!("`think` is `{other}`; expected a boolean or `low`, `medium`, `high`"),
                "think",
            ))
        }
    }
    Ok(t)
}

fn chat_request(body: &ChatBody) -> Result<ChatRequest, ApiError> {
    let mut messages = Vec::new();
    for (i, m) in body.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(bad(
                    format!("`messages[{i}].role` is `{other}`; expected `system`, `user`, `assistant` or `tool`"),
                    "messages",
                ))
            }
        };
        if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(bad(
                format!("`messages[{i}].images`: images are not supported"),
                "messages",
            ));
        }
        let mut msg = Message::new(role, m.content.clone().unwrap_or_default());
        msg.reasoning = m.thinking.clone();
        msg.name = m.tool_name.clone();
        for c in m.tool_calls.iter().flatten() {
            msg.tool_calls.push(ToolCall {
                id: super::parse::new_call_id(),
                name: c.function.name.clone(),
                arguments: c
                    .function
                    .arguments
                    .clone()
                    .unwrap_or_else(|| json!({}))
                    .to_string(),
            });
        }
        messages.push(msg);
    }
    let mut tools = Vec::new();
    for (i, t) in body.tools.iter().flatten().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "function") {
            return Err(bad(
                format!("`tools[{i}].type` is `{kind}`; only `function` tools are supported"),
                "tools",
            ));
        }
        tools.push(Tool {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            parameters: t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    Ok(ChatRequest {
        messages,
        tools,
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: true,
        format: format_of(&body.format)?,
        thinking: think_of(&body.think)?,
        fields: FIELDS,
    })
}

/// RFC 3339 UTC time with nanoseconds, as Ollama writes `created_at`.
fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

fn done_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Length => "length",
        _ => "stop",
    }
}

fn ns(d: std::time::Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Ollama's timing and count fields of a final answer.
fn stats(
    start: Instant,
    first: Option<Instant>,
    usage: &super::types::Usage,
) -> Map<String, Value> {
    let end = Instant::now();
    let first = first.unwrap_or(end);
    let mut m = Map::new();
    m.insert("total_duration".into(), json!(ns(end - start)));
    m.insert("load_duration".into(), json!(0));
    m.insert("prompt_eval_count".into(), json!(usage.prompt_tokens));
    m.insert("prompt_eval_duration".into(), json!(ns(first - start)));
    m.insert("eval_count".into(), json!(usage.completion_tokens));
    m.insert("eval_duration".into(), json!(ns(end - first)));
    m
}

fn call_json(name: &str, args: &str) -> Value {
    let arguments = if args.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
    };
    json!({"function": {"name": name, "arguments": arguments}})
}

fn ndjson(lines: impl futures::Stream<Item = Value> + Send + 'static) -> Response {
    let body = Body::from_stream(lines.map(|v| {
        let mut line = v.to_string();
        line.push('\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    }));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// How one streamed answer is written: `/api/chat` puts text in
/// `message.content`, `/api/generate` in `response`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Generate,
}

struct Lines {
    shape: Shape,
    model: String,
    start: Instant,
    first: Option<Instant>,
    /// Calls being built: (name, arguments); written when complete.
    calls: Vec<(String, String)>,
    /// Log-probabilities waiting for the line of their text.
    logprobs: Vec<Value>,
}

/// A token's log-probabilities in Ollama's shape.
fn ollama_logprob(e: &super::types::LogprobEntry) -> Value {
    json!({
        "token": e.token,
        "logprob": e.logprob,
        "top_logprobs": e.top_logprobs.iter().map(|t| json!({"token": t.token, "logprob": t.logprob})).collect::<Vec<_>>(),
    })
}

impl Lines {
    fn line(
        &mut self,
        content: &str,
        thinking: Option<&str>,
        calls: Vec<Value>,
        done: bool,
    ) -> Value {
        let mut v = json!({"model": self.model, "created_at": timestamp()});
        if !self.logprobs.is_empty() {
            v["logprobs"] = Value::Array(std::mem::take(&mut self.logprobs));
        }
        match self.shape {
            Shape::Chat => {
                let mut msg = json!({"role": "assistant", "content": content});
                if let Some(t) = thinking {
                    msg["thinking"] = json!(t);
                }
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                v["message"] = msg;
            }
            Shape::Generate => {
                v["response"] = json!(content);
                if let Some(t) = thinking {
                    v["thinking"] = json!(t);
                }
            }
        }
        v["done"] = json!(done);
        v
    }

    /// Lines for one answer event; `None` after the last.
    fn render(&mut self, ev: ChatEvent) -> Option<Vec<Value>> {
        Some(match ev {
            ChatEvent::Logprobs(v) => {
                self.logprobs.extend(v.iter().map(ollama_logprob));
                vec![]
            }
            ChatEvent::Delta(d) => {
                if self.first.is_none() {
                    self.first = Some(Instant::now());
                }
                match d {
                    Delta::Content(c) => vec![self.line(&c, None, vec![], false)],
                    Delta::Reasoning(r) => vec![self.line("", Some(&r), vec![], false)],
                    Delta::ToolCallStart { name, .. } => {
                        self.calls.push((name, String::new()));
                        vec![]
                    }
                    Delta::ToolCallArgs { index, args } => {
                        if let Some(c) = self.calls.get_mut(index) {
                            c.1.push_str(&args);
                        }
                        vec![]
                    }
                }
            }
            ChatEvent::Done { finish, usage } => {
                let mut out = Vec::new();
                let calls: Vec<Value> = self.calls.iter().map(|(n, a)| call_json(n, a)).collect();
                if !calls.is_empty() {
                    out.push(self.line("", None, calls, false));
                }
                let mut last = self.line("", None, vec![], true);
                last["done_reason"] = json!(done_reason(&finish));
                for (k, v) in stats(self.start, self.first, &usage) {
                    last[k] = v;
                }
                out.push(last);
                out
            }
            ChatEvent::Error(e) => vec![json!({"error": e.to_string()})],
        })
    }
}

fn stream_lines(events: ChatStream, lines: Lines) -> Response {
    let body = futures::stream::unfold(Some((events, lines)), |state| async move {
        let (mut events, mut lines) = state?;
        let ev = events.next().await?;
        let last = matches!(ev, ChatEvent::Done { .. } | ChatEvent::Error(_));
        let out = lines.render(ev).unwrap_or_default();
        Some((
            futures::stream::iter(out),
            if last { None } else { Some((events, lines)) },
        ))
    })
    .flatten();
    ndjson(body)
}

/// A whole answer as one object.
async fn whole(
    events: ChatStream,
    shape: Shape,
    model: String,
    start: Instant,
) -> Result<Response, OllamaError> {
    let a = collect(events).await?;
    let mut lines = Lines {
        shape,
        model,
        start,
        first: None,
        calls: Vec::new(),
        logprobs: a.logprobs.iter().map(ollama_logprob).collect(),
    };
    let calls: Vec<Value> = a
        .calls
        .iter()
        .map(|(_, n, args)| call_json(n, args))
        .collect();
    let thinking = (!a.reasoning.is_empty()).then_some(a.reasoning.as_str());
    let mut v = lines.line(&a.content, thinking, calls, true);
    v["done_reason"] = json!(done_reason(a.finish.as_ref().unwrap_or(&Finish::Stop)));
    for (k, val) in stats(start, None, &a.usage) {
        v[k] = val;
    }
    Ok(Json(v).into_response())
}

pub(super) async fn chat(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let start = arrived();
    let body: ChatBody = parse(body)?;
    let s = options_sampling(
        &body.options,
        logprobs_of(body.logprobs, body.top_logprobs)?,
    )?;
    let model = body
        .model
        .clone()
        .unwrap_or_else(|| st.cfg.model_id.clone());
    let stream = body.stream.unwrap_or(true);
    let req = chat_request(&body)?;
    let prepared = st
        .blocking(move |p, tok, limits| prepare(req, s, p, tok, limits))
        .await?;
    let events = st.submit(prepared.generation)?;
    let tok = st.backend.tokenizer()?;
    let events = chat_events(events, prepared.parser, tok, st.metrics.clone(), start);
    if !stream {
        return whole(events, Shape::Chat, model, start).await;
    }
    Ok(stream_lines(
        events,
        Lines {
            shape: Shape::Chat,
            model,
            start,
            first: None,
            calls: Vec::new(),
            logprobs: Vec::new(),
        },
    ))
}

pub(super) async fn generate(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let start = arrived();
    let body: GenerateBody = parse(body)?;
    for (set, name) in [
        (
            body.suffix.as_deref().is_some_and(|s| !s.is_empty()),
            "suffix",
        ),
        (
            body.template.as_deref().is_some_and(|s| !s.is_empty()),
            "template",
        ),
        (
            body.images.as_ref().is_some_and(|v| !v.is_empty()),
            "images",
        ),
        (
            body.context.as_ref().is_some_and(|v| !v.is_empty()),
            "context",
        ),
    ] {
        if set {
            return Err(bad(format!("`{name}` is not supported"), name).into());
        }
    }
    let s = options_sampling(
        &body.options,
        logprobs_of(body.logprobs, body.top_logprobs)?,
    )?;
    let model = body
        .model
        .clone()
        .unwrap_or_else(|| st.cfg.model_id.clone());
    let stream = body.stream.unwrap_or(true);
    let prompt = body.prompt.clone().unwrap_or_default();
    if prompt.is_empty() {
        // Ollama loads the model and answers `done` for an empty prompt.
        let v = json!({"model": model, "created_at": timestamp(), "response": "", "done": true, "done_reason": "load"});
        return Ok(Json(v).into_response());
    }
    let raw = body.raw.unwrap_or(false);
    let format = format_of(&body.format)?;
    let thinking = think_of(&body.think)?;
    let system = body.system.clone();
    let prepared = st
        .blocking(move |p, tok, limits| {
            if raw {
                if format != OutputFormat::Text || thinking != Thinking::default() {
                    return Err(bad("`format` and `think` need `raw: false`", "raw"));
                }
                let tokens = tok
                    .tokenize(&prompt, true)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                return Ok(super::chat::PreparedChat {
                    generation: finish(tokens, s, limits, "prompt")?,
                    parser: ParserSpec::Plain,
                });
            }
            let mut messages = Vec::new();
            if let Some(sys) = system {
                messages.push(Message::new(Role::System, sys));
            }
            messages.push(Message::new(Role::User, prompt));
            let req = ChatRequest {
                messages,
                tools: Vec::new(),
                tool_choice: ToolChoice::Auto,
                parallel_tool_calls: true,
                format,
                thinking,
                fields: Fields {
                    messages: "prompt",
                    ..FIELDS
                },
            };
            prepare(req, s, p, tok, limits)
        })
        .await?;
    let events = st.submit(prepared.generation)?;
    let tok = st.backend.tokenizer()?;
    let events = chat_events(events, prepared.parser, tok, st.metrics.clone(), start);
    if !stream {
        return whole(events, Shape::Generate, model, start).await;
    }
    Ok(stream_lines(
        events,
        Lines {
            shape: Shape::Generate,
            model,
            start,
            first: None,
            calls: Vec::new(),
            logprobs: Vec::new(),
        },
    ))
}

fn details(st: &AppState) -> Value {
    let c = &st.cfg.card;
    let family = if c.family.is_empty() {
        "unknown"
    } else {
        c.family.as_str()
    };
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "",
        "quantization_level": c.quantization,
    })
}

/// An id for the model (sha256 of its card id; skulk has no Ollama
/// manifests).
fn digest(st: &AppState) -> String {
    hex::encode(Sha256::digest(st.cfg.model_id.as_bytes()))
}

fn modified_at(st: &AppState) -> String {
    let (y, m, d) = civil_from_days((st.created / 86_400) as i64);
    let rem = st.created % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub(super) async fn tags(State(st): State<AppState>) -> Json<Value> {
    let id = st.cfg.model_id.clone();
    Json(json!({"models": [{
        "name": id, "model": id, "modified_at": modified_at(&st),
        "size": st.cfg.card.storage_bytes, "digest": digest(&st), "details": details(&st),
    }]}))
}

pub(super) async fn ps(State(st): State<AppState>) -> Json<Value> {
    let id = st.cfg.model_id.clone();
    Json(json!({"models": [{
        "name": id, "model": id, "size": st.cfg.card.storage_bytes, "digest": digest(&st),
        "details": details(&st), "expires_at": "9999-12-31T23:59:59Z", "size_vram": 0,
        "context_length": st.cfg.context_limit,
    }]}))
}

pub(super) async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

#[derive(Debug, Deserialize)]
pub(super) struct ShowBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub(super) async fn show(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let body: ShowBody = parse(body)?;
    let asked = body.model.or(body.name).unwrap_or_default();
    let id = &st.cfg.model_id;
    let known = asked == *id || asked.strip_suffix(":latest") == Some(id.as_str());
    if !known {
        return Err(ApiError::NotFound(format!("model `{asked}`; this server runs `{id}`")).into());
    }
    let (profile, _) = st.profile()?;
    let mut capabilities = vec!["completion"];
    if profile.tools.is_ok() {
        capabilities.push("tools");
    }
    if profile.reasoning.markers != super::profile::ReasoningMarkers::None {
        capabilities.push("thinking");
    }
    let template = match &profile.renderer {
        Renderer::Jinja { source, .. } => source.clone(),
        Renderer::Builtin => String::new(),
    };
    Ok(Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": template,
        "details": details(&st),
        "model_info": {"general.basename": id, "general.context_length": st.cfg.context_limit},
        "capabilities": capabilities,
        "modified_at": modified_at(&st),
    }))
    .into_response())
}
