//! Requests are validated once, here, into `Valid*` types: after this the
//! prompt is tokenized, fits the context, and every sampling parameter is in
//! range, so the backend never re-checks a request.

use crate::engine::{ChatMessage, SamplingParams, Tokenizer};

use super::error::ApiError;
use super::types::{
    ChatCompletionRequest, CommonParams, CompletionRequest, MessageContent, PromptSpec, StopSpec,
};

/// OpenAI accepts at most 4 stop sequences.
const MAX_STOP: usize = 4;

/// What the backend runs: one prompt, one sampler, limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGeneration {
    pub prompt: Vec<i32>,
    /// At least 1; `prompt.len() + max_tokens <= context limit`.
    pub max_tokens: u32,
    pub params: SamplingParams,
    /// Non-empty strings; generation ends before the first one produced.
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub generation: ValidGeneration,
    pub stream: bool,
    pub include_usage: bool,
}

struct Common {
    max_tokens: Option<u32>,
    params: SamplingParams,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
}

fn common(p: CommonParams) -> Result<Common, ApiError> {
    if let Some(n) = p.n {
        if n != 1 {
            return Err(ApiError::invalid(
                format!("`n` is `{n}`; only 1 choice per request is supported"),
                "n",
            ));
        }
    }
    if matches!(p.logprobs, Some(ref v) if !v.is_null() && v != &serde_json::Value::Bool(false)) {
        return Err(ApiError::invalid("`logprobs` is not supported", "logprobs"));
    }
    let (max_tokens, name) = match (p.max_completion_tokens, p.max_tokens) {
        (Some(m), _) => (Some(m), "max_completion_tokens"),
        (None, m) => (m, "max_tokens"),
    };
    let max_tokens = match max_tokens {
        None => None,
        Some(m) if m >= 1 && m <= u32::MAX as i64 => Some(m as u32),
        Some(m) => {
            return Err(ApiError::invalid(
                format!("`{name}` is `{m}`; it must be at least 1"),
                name,
            ))
        }
    };
    let mut temperature = p.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("`temperature` is `{temperature}`; it must be between 0 and 2"),
            "temperature",
        ));
    }
    let top_p = p.top_p.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&top_p) {
        return Err(ApiError::invalid(
            format!("`top_p` is `{top_p}`; it must be between 0 and 1"),
            "top_p",
        ));
    }
    if top_p == 0.0 {
        // A nucleus of mass 0 holds only the most likely token.
        temperature = 0.0;
    }
    let top_k = match p.top_k {
        None => 0,
        Some(k) if (0..=u32::MAX as i64).contains(&k) => k as u32,
        Some(k) => {
            return Err(ApiError::invalid(
                format!("`top_k` is `{k}`; it must be 0 (disabled) or more"),
                "top_k",
            ))
        }
    };
    let stop = match p.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s],
        Some(StopSpec::Many(v)) => v,
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid(
            format!(
                "`stop` has {} sequences; at most {MAX_STOP} are allowed",
                stop.len()
            ),
            "stop",
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "`stop` sequences must not be empty",
            "stop",
        ));
    }
    let stream = p.stream.unwrap_or(false);
    Ok(Common {
        max_tokens,
        params: SamplingParams {
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k,
            // OpenAI seeds are any 64-bit integer; reinterpret the bits.
            seed: p.seed.map(|s| s as u64).unwrap_or_else(rand::random),
        },
        stop,
        stream,
        include_usage: stream
            && p.stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
    })
}

/// Check the prompt against the context limit; fill in `max_tokens`.
fn finish(
    prompt: Vec<i32>,
    c: Common,
    context_limit: u32,
    what: &str,
) -> Result<ValidRequest, ApiError> {
    let n = prompt.len() as u64;
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            format!("the {what} is empty"),
            if what == "prompt" {
                "prompt"
            } else {
                "messages"
            },
        ));
    }
    let limit = u64::from(context_limit);
    if n >= limit {
        return Err(ApiError::ContextLengthExceeded {
            message: format!(
                "this model's maximum context length is {limit} tokens, but your {what} has {n} tokens, \
                 which leaves no room for a completion; shorten the {what}"
            ),
        });
    }
    let max_tokens = match c.max_tokens {
        None => (limit - n) as u32,
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
    Ok(ValidRequest {
        generation: ValidGeneration {
            prompt,
            max_tokens,
            params: c.params,
            stop: c.stop,
        },
        stream: c.stream,
        include_usage: c.include_usage,
    })
}

fn engine_error(e: crate::engine::EngineError) -> ApiError {
    ApiError::Internal(e.to_string())
}

pub fn validate_chat(
    req: ChatCompletionRequest,
    tokenizer: &dyn Tokenizer,
    context_limit: u32,
) -> Result<ValidRequest, ApiError> {
    let c = common(req.common)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid("`messages` is empty", "messages"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "user" | "assistant" | "tool" => m.role,
            // OpenAI's newer name for the system role.
            "developer" => "system".to_owned(),
            other => {
                return Err(ApiError::invalid(
                    format!("`messages[{i}].role` is `{other}`; expected one of `system`, `developer`, `user`, `assistant`, `tool`"),
                    "messages",
                ))
            }
        };
        let content = match m.content {
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
        };
        messages.push(ChatMessage { role, content });
    }
    let text = tokenizer
        .apply_chat_template(&messages, true)
        .map_err(engine_error)?;
    let prompt = tokenizer.tokenize(&text, true).map_err(engine_error)?;
    finish(prompt, c, context_limit, "messages")
}

pub fn validate_completion(
    req: CompletionRequest,
    tokenizer: &dyn Tokenizer,
    context_limit: u32,
) -> Result<ValidRequest, ApiError> {
    let c = common(req.common)?;
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
    finish(prompt, c, context_limit, "prompt")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

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
        validate_chat(serde_json::from_value(json).unwrap(), &Bytes, limit)
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
                seed: 5
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
            ("logprobs", serde_json::json!(true)),
        ] {
            let mut req = serde_json::json!({"messages": [{"role": "user", "content": "hi"}]});
            req[field] = value;
            let e = chat(req, 100).unwrap_err();
            assert_eq!(e.status(), 400, "{field}");
            assert_eq!(e.body()["error"]["param"], field, "{field}: {e}");
            assert!(
                e.to_string().contains(&format!("`{field}`")),
                "{field}: {e}"
            );
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
            validate_completion(serde_json::from_value(j).unwrap(), &Bytes, 50)
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
