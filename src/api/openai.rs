//! The OpenAI dialect: `/v1/chat/completions` (tools, structured output,
//! reasoning as `reasoning_content`, logprobs), `/v1/completions` and
//! `/v1/models`, as JSON or server-sent events.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};

use super::parse::{Delta as ParsedDelta, ParserSpec};
use super::stream::{chat_events, collect, ChatEvent, ChatStream};
use super::types::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatLogprobs,
    ChunkChoice, CompletionLogprobs, CompletionRequest, Delta, DeltaFunction, DeltaToolCall,
    LogprobEntry, ModelEntry, ModelList, ResponseFunction, ResponseMessage, ResponseToolCall,
    TextChoice, TextCompletion, Usage,
};
use super::{arrived, new_id, now, parse, validate, ApiError, AppState};

pub(super) async fn models(State(st): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelEntry {
            id: st.cfg.model_id.clone(),
            object: "model",
            created: st.created,
            owned_by: "skulk",
            max_model_len: st.cfg.context_limit,
            default_max_tokens: st.cfg.default_max_tokens,
        }],
    })
}

pub(super) async fn chat_completions(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = arrived();
    let req: ChatCompletionRequest = parse(body)?;
    let v = st
        .blocking(move |p, tok, limits| validate::validate_chat(req, p, tok, limits))
        .await?;
    let logprobs = v.request.generation.params.logprobs.is_some();
    let events = st.submit(v.request.generation)?;
    let tok = st.backend.tokenizer()?;
    let stream = chat_events(events, v.chat.parser, tok, st.metrics.clone(), start);
    let id = new_id("chatcmpl-");
    let model = st.cfg.model_id.clone();
    let created = now();
    if v.request.stream {
        let r = Render {
            id,
            model,
            created,
            chat: true,
            include_usage: v.request.include_usage,
        };
        return Ok(sse(stream, r).into_response());
    }
    let a = collect(stream).await?;
    let finish = a.finish.clone().expect("collect sets the finish");
    let tool_calls: Vec<ResponseToolCall> = a
        .calls
        .into_iter()
        .map(|(id, name, args)| ResponseToolCall {
            id,
            kind: "function",
            function: ResponseFunction {
                name,
                arguments: if args.is_empty() { "{}".into() } else { args },
            },
        })
        .collect();
    let content = if tool_calls.is_empty() || !a.content.is_empty() {
        Some(a.content)
    } else {
        None
    };
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: vec![ChatChoice {
            index: 0,
            message: ResponseMessage {
                role: "assistant",
                content,
                reasoning_content: (!a.reasoning.is_empty()).then_some(a.reasoning),
                tool_calls,
            },
            logprobs: logprobs.then_some(ChatLogprobs {
                content: a.logprobs,
                refusal: None,
            }),
            finish_reason: finish.openai(),
        }],
        usage: a.usage,
    })
    .into_response())
}

pub(super) async fn completions(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = arrived();
    let req: CompletionRequest = parse(body)?;
    let v = st
        .blocking(move |_, tok, limits| validate::validate_completion(req, tok, limits))
        .await?;
    let logprobs = v.generation.params.logprobs.is_some();
    let events = st.submit(v.generation)?;
    let tok = st.backend.tokenizer()?;
    let stream = chat_events(events, ParserSpec::Plain, tok, st.metrics.clone(), start);
    let id = new_id("cmpl-");
    let model = st.cfg.model_id.clone();
    let created = now();
    if v.stream {
        let r = Render {
            id,
            model,
            created,
            chat: false,
            include_usage: v.include_usage,
        };
        return Ok(sse(stream, r).into_response());
    }
    let a = collect(stream).await?;
    let mut lp = CompletionLogprobs::default();
    lp.push(&a.logprobs, 0);
    Ok(Json(TextCompletion {
        id,
        object: "text_completion",
        created,
        model,
        choices: vec![TextChoice {
            index: 0,
            text: a.content,
            logprobs: logprobs.then_some(lp),
            finish_reason: a.finish.map(|f| f.openai()),
        }],
        usage: Some(a.usage),
    })
    .into_response())
}

/// Renders stream chunks for one request.
struct Render {
    id: String,
    model: String,
    created: u64,
    chat: bool,
    include_usage: bool,
}

/// Per-stream state: log-probabilities waiting for the chunk of their text,
/// and the text offset (completions' `text_offset`).
#[derive(Default)]
struct Pending {
    logprobs: Vec<LogprobEntry>,
    offset: usize,
}

impl Render {
    fn chat_chunk(
        &self,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<super::types::FinishReason>,
        usage: Option<Usage>,
    ) -> SseEvent {
        let choices = if usage.is_some() {
            vec![]
        } else {
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish,
            }]
        };
        let data = serde_json::to_string(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        });
        SseEvent::default().data(data.expect("chunks serialize"))
    }

    fn text_chunk(
        &self,
        text: String,
        logprobs: Option<CompletionLogprobs>,
        finish: Option<super::types::FinishReason>,
        usage: Option<Usage>,
    ) -> SseEvent {
        let choices = if usage.is_some() {
            vec![]
        } else {
            vec![TextChoice {
                index: 0,
                text,
                logprobs,
                finish_reason: finish,
            }]
        };
        let data = serde_json::to_string(&TextCompletion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        });
        SseEvent::default().data(data.expect("chunks serialize"))
    }

    fn first(&self) -> Option<SseEvent> {
        self.chat.then(|| {
            self.chat_chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
                None,
                None,
            )
        })
    }

    /// Log-probabilities waiting, as the chunk's field.
    fn take_logprobs(
        &self,
        p: &mut Pending,
        text_len: usize,
    ) -> (Option<ChatLogprobs>, Option<CompletionLogprobs>) {
        if p.logprobs.is_empty() {
            p.offset += text_len;
            return (None, None);
        }
        let entries = std::mem::take(&mut p.logprobs);
        if self.chat {
            p.offset += text_len;
            (
                Some(ChatLogprobs {
                    content: entries,
                    refusal: None,
                }),
                None,
            )
        } else {
            let mut lp = CompletionLogprobs::default();
            lp.push(&entries, p.offset);
            p.offset += text_len;
            (None, Some(lp))
        }
    }

    /// The events for one answer event, and whether the stream goes on.
    fn render(&self, ev: Option<ChatEvent>, p: &mut Pending) -> (Vec<SseEvent>, bool) {
        let Some(ev) = ev else {
            return (vec![], false);
        };
        match ev {
            ChatEvent::Logprobs(v) => {
                p.logprobs.extend(v);
                (vec![], true)
            }
            ChatEvent::Delta(d) => {
                let text_len = match &d {
                    ParsedDelta::Content(c) => c.len(),
                    _ => 0,
                };
                let (chat_lp, text_lp) = self.take_logprobs(p, text_len);
                if !self.chat {
                    let ParsedDelta::Content(c) = d else {
                        return (vec![], true);
                    };
                    return (vec![self.text_chunk(c, text_lp, None, None)], true);
                }
                let delta = match d {
                    ParsedDelta::Content(c) => Delta {
                        content: Some(c),
                        ..Delta::default()
                    },
                    ParsedDelta::Reasoning(r) => Delta {
                        reasoning_content: Some(r),
                        ..Delta::default()
                    },
                    ParsedDelta::ToolCallStart { index, id, name } => Delta {
                        tool_calls: vec![DeltaToolCall {
                            index,
                            id: Some(id),
                            kind: Some("function"),
                            function: DeltaFunction {
                                name: Some(name),
                                arguments: String::new(),
                            },
                        }],
                        ..Delta::default()
                    },
                    ParsedDelta::ToolCallArgs { index, args } => Delta {
                        tool_calls: vec![DeltaToolCall {
                            index,
                            id: None,
                            kind: None,
                            function: DeltaFunction {
                                name: None,
                                arguments: args,
                            },
                        }],
                        ..Delta::default()
                    },
                };
                (vec![self.chat_chunk(delta, chat_lp, None, None)], true)
            }
            ChatEvent::Done { finish, usage } => {
                let (chat_lp, text_lp) = self.take_logprobs(p, 0);
                let finish = Some(finish.openai());
                let mut out = vec![if self.chat {
                    self.chat_chunk(Delta::default(), chat_lp, finish, None)
                } else {
                    self.text_chunk(String::new(), text_lp, finish, None)
                }];
                if self.include_usage {
                    out.push(if self.chat {
                        self.chat_chunk(Delta::default(), None, None, Some(usage))
                    } else {
                        self.text_chunk(String::new(), None, None, Some(usage))
                    });
                }
                out.push(SseEvent::default().data("[DONE]"));
                (out, false)
            }
            ChatEvent::Error(e) => (vec![SseEvent::default().data(e.body().to_string())], false),
        }
    }
}

fn sse(events: ChatStream, r: Render) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let first = r.first();
    let state = Some((events, r, Pending::default()));
    let body = futures::stream::unfold(state, |state| async move {
        let (mut events, r, mut p) = state?;
        let ev = events.next().await;
        let (out, more) = r.render(ev, &mut p);
        Some((
            futures::stream::iter(out),
            if more { Some((events, r, p)) } else { None },
        ))
    })
    .flatten();
    let stream = futures::stream::iter(first).chain(body).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
