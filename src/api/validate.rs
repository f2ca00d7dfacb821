//! Requests are validated once, here, into `Valid*` types: after this the
//! prompt is tokenized, fits the context, and every sampling parameter is in
//! range, so the backend never re-checks a request. The sampling checks are
//! shared by every dialect ([`RawSampling`] carries the dialect's field
//! names); the OpenAI requests are turned into the dialect-neutral
//! [`ChatRequest`] here.

use serde_json::Value;

use crate::card::ReasoningEffort;
use crate::engine::{SamplingParams, Tokenizer, MAX_TOP_LOGPROBS};

use super::chat::{
    prepare, ChatRequest, Fields, Message, OutputFormat, PreparedChat, Role, Thinking, ToolChoice,
};
use super::error::ApiError;
use super::profile::Profile;
use super::tools::{Tool, ToolCall};
use super::types::{
    ChatCompletionRequest, CommonParams, CompletionRequest, MessageContent, PromptSpec,
    RequestMessage, StopSpec,
};

/// OpenAI accepts at most 4 stop sequences.
pub const OPENAI_MAX_STOP: usize = 4;

/// OpenAI's limit on `logprobs` for completions.
const MAX_COMPLETION_LOGPROBS: i64 = 5;

/// What the backend runs: one prompt, one sampler, limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGeneration {
    pub prompt: Vec<i32>,
    /// At least 1; `prompt.len() + max_tokens <= context limit`.
    pub max_tokens: u32,
    pub params: SamplingParams,
    /// Non-empty strings; generation ends before the first one produced.
    pub stop: Vec<String>,
    /// Control tokens are written out in the text (the answer's parser
    /// reads markers such as `<|channel|>`).
    pub render_special: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub generation: ValidGeneration,
    pub stream: bool,
    pub include_usage: bool,
}

/// A validated OpenAI chat request and how to read its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidChat {
    pub request: ValidRequest,
    pub chat: PreparedChat,
}

/// How long a generation may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Prompt plus completion tokens per request.
    pub context: u32,
    /// Completion tokens of a request that sets no length of its own (see
    /// `api::DEFAULT_MAX_TOKENS`).
    pub default_max_tokens: u32,
}

impl Limits {
    /// `context` tokens, and no default cap below it.
    pub fn context(context: u32) -> Limits {
        Limits {
            context,
            default_max_tokens: u32::MAX,
        }
    }
}

/// Sampling settings checked, before the prompt is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// `None`: the request set no length ([`Limits::default_max_tokens`]).
    pub max_tokens: Option<u32>,
    /// The request asked to generate until the context is full (Ollama's
    /// `num_predict` -1 or -2), past the default cap.
    pub until_full: bool,
    pub params: SamplingParams,
    pub stop: Vec<String>,
}

/// Sampling values as a dialect sent them, with its field names.
#[derive(Debug, Clone, Default)]
pub struct RawSampling {
    /// Put before every field name in errors (`options.` for Ollama).
    pub prefix: &'static str,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub seed: Option<i64>,
    /// The value and its field's name (`max_tokens`, `num_predict`, ...).
    pub max_tokens: Option<(i64, &'static str)>,
    /// No cap but the context (see [`Sampling::until_full`]).
    pub until_full: bool,
    pub stop: Vec<String>,
    pub stop_field: &'static str,
    pub max_stop: Option<usize>,
    pub logprobs: Option<u8>,
}

fn field(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// Checks sampling values; every error names the dialect's field.
pub fn sampling(r: RawSampling) -> Result<Sampling, ApiError> {
    let p = r.prefix;
    let max_tokens = match r.max_tokens {
        None => None,
        Some((m, _)) if m >= 1 && m <= u32::MAX as i64 => Some(m as u32),
        Some((m, name)) => {
            let name = field(p, name);
            return Err(ApiError::invalid(
                format!("`{name}` is `{m}`; it must be at least 1"),
                name,
            ));
        }
    };
    let mut temperature = r.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        let name = field(p, "temperature");
        return Err(ApiError::invalid(
            format!("`{name}` is `{temperature}`; it must be between 0 and 2"),
            name,
        ));
    }
    let top_p = r.top_p.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&top_p) {
        let name = field(p, "top_p");
        return Err(ApiError::invalid(
            format!("`{name}` is `{top_p}`; it must be between 0 and 1"),
            name,
        ));
    }
    if top_p == 0.0 {
        // A nucleus of mass 0 holds only the most likely token.
        temperature = 0.0;
    }
    let top_k = match r.top_k {
        None => 0,
        Some(k) if (0..=u32::MAX as i64).contains(&k) => k as u32,
        Some(k) => {
            let name = field(p, "top_k");
            return Err(ApiError::invalid(
                format!("`{name}` is `{k}`; it must be 0 (disabled) or more"),
                name,
            ));
        }
    };
    let stop_name = field(p, r.stop_field);
    if let Some(max) = r.max_stop {
        if r.stop.len() > max {
            return Err(ApiError::invalid(
                format!(
                    "`{stop_name}` has {} sequences; at most {max} are allowed",
                    r.stop.len()
                ),
                stop_name,
            ));
        }
    }
    if r.stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            format!("`{stop_name}` sequences must not be empty"),
            stop_name,
        ));
    }
    Ok(Sampling {
        max_tokens,
        until_full: r.until_full,
        params: SamplingParams {
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k,
            // Seeds are any 64-bit integer; reinterpret the bits.
            seed: r.seed.map(|s| s as u64).unwrap_or_else(rand::random),
            grammar: None,
            logprobs: r.logprobs,
        },
        stop: r.stop,
    })
}

/// Check the prompt against the context limit; fill in `max_tokens` (the
/// rest of the context, at most the default when the request set none).
/// `what` names the prompt's field (`messages`, `prompt`).
pub fn finish(
    prompt: Vec<i32>,
    s: Sampling,
    limits: Limits,
    what: &str,
) -> Result<ValidGeneration, ApiError> {
    let n = prompt.len() as u64;
    if prompt.is_empty() {
        return Err(ApiError::invalid(format!("the {what} is empty"), what));
    }
    let limit = u64::from(limits.context);
    if n >= limit {
        return Err(ApiError::ContextLengthExceeded {
            message: format!(
                "this model's maximum context length is {limit} tokens, but your {what} has {n} tokens, \
                 which leaves no room for a completion; shorten the {what}"
            ),
        });
    }
    let max_tokens = match s.max_tokens {
        None if s.until_full => (limit - n) as u32,
        None => ((limit - n) as u32).min(limits.default_max_tokens),
        Some(m) if n + u64::from(m) <= limit => m,
        Some(m) => {
            return Err(ApiError::ContextLengthExceeded {
                message: format!(
                    "this model's maximum context length is {limit} tokens, but you requested {} tokens \
                     ({n} in the {what}, {m} in the completion); shorten the {what} or lower `max_tokens`",
                    n + u64::from(m)
                ),
            })
        }
    };
    Ok(ValidGeneration {
        prompt,
        max_tokens,
        params: s.params,
        stop: s.stop,
        render_special: false,
    })
}

/// The OpenAI parameters shared by chat and completions. `logprobs` is the
/// number of top tokens asked for, if any (each endpoint reads its own).
fn openai_sampling(
    p: &CommonParams,
    logprobs: Option<u8>,
) -> Result<(Sampling, bool, bool), ApiError> {
    if let Some(n) = p.n {
        if n != 1 {
            return Err(ApiError::invalid(
                format!("`n` is `{n}`; only 1 choice per request is supported"),
                "n",
            ));
        }
    }
    for (name, v) in [
        ("frequency_penalty", p.frequency_penalty),
        ("presence_penalty", p.presence_penalty),
    ] {
        if let Some(v) = v.filter(|v| *v != 0.0) {
            return Err(ApiError::invalid(
                format!("`{name}` is `{v}`; skulk does not implement it (leave it out or set 0)"),
                name,
            ));
        }
    }
    if p.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(ApiError::invalid(
            "`logit_bias` is not supported (leave it out or send `{}`)",
            "logit_bias",
        ));
    }
    let max_tokens = match (p.max_completion_tokens, p.max_tokens) {
        (Some(m), _) => Some((m, "max_completion_tokens")),
        (None, m) => m.map(|m| (m, "max_tokens")),
    };
    let stop = match &p.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s.clone()],
        Some(StopSpec::Many(v)) => v.clone(),
    };
    let s = sampling(RawSampling {
        prefix: "",
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        seed: p.seed,
        max_tokens,
        until_full: false,
        stop,
        stop_field: "stop",
        max_stop: Some(OPENAI_MAX_STOP),
        logprobs,
    })?;
    let stream = p.stream.unwrap_or(false);
    let include_usage = stream
        && p.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
    Ok((s, stream, include_usage))
}

/// A reasoning effort's name, or a 400 naming `field`.
pub fn parse_effort(value: &str, field: &'static str) -> Result<ReasoningEffort, ApiError> {
    serde_json::from_value(Value::String(value.to_string())).map_err(|_| {
        ApiError::invalid(
            format!(
                "`{field}` is `{value}`; expected one of `none`, `minimal`, `low`, `medium`, `high`, `xhigh`"
            ),
            field,
        )
    })
}

fn message_text(content: Option<MessageContent>, i: usize) -> Result<String, ApiError> {
    Ok(match content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t,
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.into_iter().enumerate() {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("`messages[{i}].content[{j}]` has type `{kind}`; only `text` parts with a `text` field are supported"),
                            "messages",
                        ))
                    }
                }
            }
            text
        }
    })
}

fn openai_message(m: RequestMessage, i: usize) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::invalid(
                format!("`messages[{i}].role` is `{other}`; expected one of `system`, `developer`, `user`, `assistant`, `tool`"),
                "messages",
            ))
        }
    };
    let mut msg = Message::new(role, message_text(m.content, i)?);
    msg.reasoning = m.reasoning_content;
    msg.tool_call_id = m.tool_call_id;
    msg.name = m.name;
    for (j, c) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
        let arguments = match c.function.arguments {
            None => "{}".to_string(),
            Some(Value::String(s)) => s,
            Some(v @ Value::Object(_)) => v.to_string(),
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("`messages[{i}].tool_calls[{j}].function.arguments` is `{other}`; expected a JSON string"),
                    "messages",
                ))
            }
        };
        msg.tool_calls.push(ToolCall {
            id: c.id.unwrap_or_else(super::parse::new_call_id),
            name: c.function.name,
            arguments,
        });
    }
    Ok(msg)
}

/// `tool_choice` in OpenAI's shapes.
fn openai_tool_choice(v: Option<Value>) -> Result<ToolChoice, ApiError> {
    let bad = |what: String| ApiError::invalid(what, "tool_choice");
    Ok(match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(format!(
                    "`tool_choice` is `{other}`; expected `auto`, `none`, `required` or a function"
                )))
            }
        },
        Some(Value::Object(o)) => match o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Function(name.to_string()),
            None => {
                return Err(bad(
                    "`tool_choice` must name a function: `{\"type\": \"function\", \"function\": {\"name\": ...}}`".into(),
                ))
            }
        },
        Some(other) => {
            return Err(bad(format!(
                "`tool_choice` is `{other}`; expected a string or an object"
            )))
        }
    })
}

/// `response_format` in OpenAI's shapes.
pub fn openai_response_format(v: Option<Value>) -> Result<OutputFormat, ApiError> {
    let bad = |what: String| ApiError::invalid(what, "response_format");
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(OutputFormat::Text);
    };
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(OutputFormat::Text),
        Some("json_object") => Ok(OutputFormat::JsonObject),
        Some("json_schema") => {
            let schema = v
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .cloned()
                .ok_or_else(|| bad("`response_format.json_schema.schema` is missing".into()))?;
            if !schema.is_object() && !schema.is_boolean() {
                return Err(bad(
                    "`response_format.json_schema.schema` must be a JSON schema object".into(),
                ));
            }
            Ok(OutputFormat::JsonSchema(schema))
        }
        Some(other) => Err(bad(format!(
            "`response_format.type` is `{other}`; expected `text`, `json_object` or `json_schema`"
        ))),
        None => Err(bad("`response_format.type` is missing".into())),
    }
}

pub fn validate_chat(
    req: ChatCompletionRequest,
    profile: &Profile,
    tokenizer: &dyn Tokenizer,
    limits: Limits,
) -> Result<ValidChat, ApiError> {
    let logprobs = match &req.common.logprobs {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(match req.top_logprobs {
            None => 0,
            Some(n) if (0..=i64::from(MAX_TOP_LOGPROBS)).contains(&n) => n as u8,
            Some(n) => {
                return Err(ApiError::invalid(
                    format!("`top_logprobs` is `{n}`; it must be between 0 and {MAX_TOP_LOGPROBS}"),
                    "top_logprobs",
                ))
            }
        }),
        Some(other) => {
            return Err(ApiError::invalid(
                format!("`logprobs` is `{other}`; expected `true` or `false`"),
                "logprobs",
            ))
        }
    };
    if logprobs.is_none() && req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::invalid(
            "`top_logprobs` needs `logprobs: true`",
            "top_logprobs",
        ));
    }
    let (sampling, stream, include_usage) = openai_sampling(&req.common, logprobs)?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        messages.push(openai_message(m, i)?);
    }
    let mut tools = Vec::new();
    for (i, t) in req.tools.unwrap_or_default().into_iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::invalid(
                format!(
                    "`tools[{i}].type` is `{}`; only `function` tools are supported",
                    t.kind
                ),
                "tools",
            ));
        }
        tools.push(Tool {
            name: t.function.name,
            description: t.function.description,
            parameters: t
                .function
                .parameters
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        });
    }
    let mut thinking = Thinking::default();
    let kwargs = req.chat_template_kwargs.unwrap_or_default();
    if let Some(on) = req.enable_thinking {
        thinking.enable = Some((on, "enable_thinking"));
    } else if let Some(v) = kwargs.get("enable_thinking") {
        match v.as_bool() {
            Some(on) => thinking.enable = Some((on, "chat_template_kwargs.enable_thinking")),
            None => {
                return Err(ApiError::invalid(
                    format!("`chat_template_kwargs.enable_thinking` is `{v}`; expected a boolean"),
                    "chat_template_kwargs",
                ))
            }
        }
    }
    if let Some((k, _)) = kwargs.iter().find(|(k, _)| k.as_str() != "enable_thinking") {
        return Err(ApiError::invalid(
            format!("`chat_template_kwargs.{k}` is not supported (only `enable_thinking` is)"),
            "chat_template_kwargs",
        ));
    }
    if let Some(e) = &req.reasoning_effort {
        thinking.effort = Some((parse_effort(e, "reasoning_effort")?, "reasoning_effort"));
    }
    let chat = ChatRequest {
        messages,
        tools,
        tool_choice: openai_tool_choice(req.tool_choice)?,
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        format: openai_response_format(req.response_format)?,
        thinking,
        fields: Fields::OPENAI,
    };
    let prepared = prepare(chat, sampling, profile, tokenizer, limits)?;
    Ok(ValidChat {
        request: ValidRequest {
            generation: prepared.generation.clone(),
            stream,
            include_usage,
        },
        chat: prepared,
    })
}

pub fn validate_completion(
    req: CompletionRequest,
    tokenizer: &dyn Tokenizer,
    limits: Limits,
) -> Result<ValidRequest, ApiError> {
    let logprobs = match &req.common.logprobs {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=MAX_COMPLETION_LOGPROBS).contains(&n) => Some(n as u8),
            _ => {
                return Err(ApiError::invalid(
                    format!("`logprobs` is `{v}`; it must be an integer between 0 and {MAX_COMPLETION_LOGPROBS}"),
                    "logprobs",
                ))
            }
        },
    };
    let (s, stream, include_usage) = openai_sampling(&req.common, logprobs)?;
    if req.echo == Some(true) {
        return Err(ApiError::invalid("`echo` is not supported", "echo"));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("`suffix` is not supported", "suffix"));
    }
    if req.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid("`best_of` must be 1", "best_of"));
    }
    let one_prompt = || {
        ApiError::invalid(
            "`prompt` must be one string (several prompts per request are not supported)",
            "prompt",
        )
    };
    let engine_error = |e: crate::engine::EngineError| ApiError::Internal(e.to_string());
    let prompt = match req.prompt {
        PromptSpec::Text(t) => tokenizer.tokenize(&t, true).map_err(engine_error)?,
        PromptSpec::Texts(v) => match <[String; 1]>::try_from(v) {
            Ok([t]) => tokenizer.tokenize(&t, true).map_err(engine_error)?,
            Err(_) => return Err(one_prompt()),
        },
        PromptSpec::Tokens(_) | PromptSpec::TokenLists(_) => {
            return Err(ApiError::invalid(
                "`prompt` as token ids is not supported; send text",
                "prompt",
            ))
        }
    };
    Ok(ValidRequest {
        generation: finish(prompt, s, limits, "prompt")?,
        stream,
        include_usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ChatMessage, EngineError};

    /// One token per byte; the template is `role: content\n` per message.
    struct Bytes;
    impl Tokenizer for Bytes {
        fn apply_chat_template(&self, m: &[ChatMessage], _: bool) -> Result<String, EngineError> {
            Ok(m.iter()
                .map(|m| format!("{}: {}\n", m.role, m.content))
                .collect())
        }
        fn tokenize(&self, text: &str, _: bool) -> Result<Vec<i32>, EngineError> {
            Ok(text.bytes().map(i32::from).collect())
        }
        fn token_to_piece(&self, t: i32) -> Vec<u8> {
            vec![t as u8]
        }
        fn is_eog(&self, _: i32) -> bool {
            false
        }
    }

    fn chat(json: serde_json::Value, limit: u32) -> Result<ValidRequest, ApiError> {
        let profile = Profile::resolve(super::super::CardChat::default(), &Bytes);
        validate_chat(
            serde_json::from_value(json).unwrap(),
            &profile,
            &Bytes,
            Limits::context(limit),
        )
        .map(|v| v.request)
    }

    #[test]
    fn a_plain_request_gets_openai_defaults_and_the_rest_of_the_context() {
        let v = chat(
            serde_json::json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "seed": 5}),
            100,
        )
        .unwrap();
        assert_eq!(v.generation.prompt.len(), "user: hi\n".len());
        assert_eq!(v.generation.max_tokens, 100 - 9);
        assert_eq!(
            v.generation.params,
            SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
                top_k: 0,
                seed: 5,
                ..SamplingParams::default()
            }
        );
        assert!(!v.stream && !v.include_usage);
    }

    #[test]
    fn prompt_over_the_limit_is_context_length_exceeded() {
        let long = "x".repeat(200);
        let e = chat(
            serde_json::json!({"messages": [{"role": "user", "content": long}]}),
            100,
        )
        .unwrap_err();
        assert_eq!(e.code(), Some("context_length_exceeded"));
        assert_eq!(e.status(), 400);
        // Explicit max_tokens that does not fit either.
        let e = chat(
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 92}),
            100,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("you requested 101 tokens (9 in the messages, 92 in the completion)"),
            "{e}"
        );
        // max_completion_tokens wins over max_tokens.
        let v = chat(
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500, "max_completion_tokens": 7}),
            100,
        )
        .unwrap();
        assert_eq!(v.generation.max_tokens, 7);
    }

    #[test]
    fn out_of_range_parameters_are_400_naming_the_field() {
        for (field, value) in [
            ("n", serde_json::json!(2)),
            ("temperature", serde_json::json!(2.5)),
            ("top_p", serde_json::json!(1.5)),
            ("top_k", serde_json::json!(-1)),
            ("max_tokens", serde_json::json!(0)),
            ("stop", serde_json::json!(["a", "b", "c", "d", "e"])),
            ("stop", serde_json::json!("")),
            ("top_logprobs", serde_json::json!(21)),
            ("logprobs", serde_json::json!(3)),
            ("reasoning_effort", serde_json::json!("extreme")),
            ("tool_choice", serde_json::json!("sometimes")),
            ("response_format", serde_json::json!({"type": "yaml"})),
            ("chat_template_kwargs", serde_json::json!({"custom": 1})),
            ("frequency_penalty", serde_json::json!(0.5)),
            ("logit_bias", serde_json::json!({"42": 10})),
        ] {
            let mut req = serde_json::json!({"messages": [{"role": "user", "content": "hi"}]});
            req[field] = value;
            let e = chat(req, 100).unwrap_err();
            assert_eq!(e.status(), 400, "{field}");
            assert_eq!(e.body()["error"]["param"], field, "{field}: {e}");
            assert!(e.to_string().contains(&format!("`{field}")), "{field}: {e}");
        }
    }

    #[test]
    fn messages_are_checked() {
        let e = chat(serde_json::json!({"messages": []}), 100).unwrap_err();
        assert_eq!(e.to_string(), "`messages` is empty");
        let e = chat(
            serde_json::json!({"messages": [{"role": "wizard", "content": "hi"}]}),
            100,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("`messages[0].role` is `wizard`"),
            "{e}"
        );
        let e = chat(
            serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            100,
        )
        .unwrap_err();
        assert!(e.to_string().contains("has type `image_url`"), "{e}");
        // Text parts are joined; developer is the system role.
        let v = chat(
            serde_json::json!({"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
            100,
        )
        .unwrap();
        assert_eq!(
            v.generation.prompt,
            "system: ab\n".bytes().map(i32::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn stop_stream_and_top_p_zero() {
        let v = chat(
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "stop": "END", "stream": true,
                "stream_options": {"include_usage": true}, "top_p": 0, "temperature": 0.7}),
            100,
        )
        .unwrap();
        assert_eq!(v.generation.stop, vec!["END".to_owned()]);
        assert!(v.stream && v.include_usage);
        assert_eq!(v.generation.params.temperature, 0.0);
    }

    #[test]
    fn completions_take_one_text_prompt() {
        let c = |j: serde_json::Value| {
            validate_completion(
                serde_json::from_value(j).unwrap(),
                &Bytes,
                Limits::context(50),
            )
        };
        let v = c(serde_json::json!({"prompt": "abc", "max_tokens": 3})).unwrap();
        assert_eq!(v.generation.prompt, vec![97, 98, 99]);
        assert_eq!(v.generation.max_tokens, 3);
        assert!(c(serde_json::json!({"prompt": ["abc"]})).is_ok());
        assert_eq!(
            c(serde_json::json!({"prompt": ["a", "b"]}))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            c(serde_json::json!({"prompt": [1, 2]}))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            c(serde_json::json!({"prompt": ""}))
                .unwrap_err()
                .to_string(),
            "the prompt is empty"
        );
        assert_eq!(
            c(serde_json::json!({"prompt": "x".repeat(50)}))
                .unwrap_err()
                .code(),
            Some("context_length_exceeded")
        );
    }
}
