//! The OpenAI-compatible HTTP API served by rank 0 (axum).
//!
//! The HTTP layer knows only the [`Backend`] trait: it authenticates, parses
//! and validates each request once into a [`ValidRequest`] (tokenized, within
//! the context limit), hands the [`ValidGeneration`] to the backend and turns
//! the backend's [`Event`]s into a JSON answer or an SSE stream. Every failure
//! becomes an HTTP status and an OpenAI `{"error": {...}}` body in one place,
//! [`ApiError`].
//!
//! Streaming: a client that disconnects drops its event stream, which the
//! backend sees as a cancelled request. How a slow reader is kept from
//! stalling others is the backend's policy (see `shard`); when the backend
//! cuts a stream off, the stream ends with an error event.

mod error;
pub mod types;
pub mod validate;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use error::ApiError;
use types::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChunkChoice,
    CompletionRequest, Delta, FinishReason, ModelEntry, ModelList, ResponseMessage, TextChoice,
    TextCompletion, Usage,
};
pub use validate::{ValidGeneration, ValidRequest};

use crate::engine::Tokenizer;

/// Tokens a request generates when it sets no `max_tokens` and the plan
/// gives no other default (llama-server's `--n-predict` is this setting).
/// OpenAI's own default, "until the context is full", lets one forgotten
/// `max_tokens` hold a ring for many minutes (a small model generated
/// 8,182 tokens for a one-word prompt); 2048 tokens is a long answer and
/// takes minutes, not hours, even on a slow CPU ring. A request may ask for
/// more, up to the context limit.
pub const DEFAULT_MAX_TOKENS: u32 = 2048;

/// Request bodies up to this size are read; a 128k-token prompt is about
/// 512 KiB of text, so 8 MiB leaves room for JSON overhead and escapes.
const MAX_BODY_BYTES: usize = 8 << 20;

/// What a generation reports, in order: text pieces (valid UTF-8, stop
/// strings removed), then exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Done { finish: FinishReason, usage: Usage },
    Error(ApiError),
}

pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Ranks joining or loading.
    Starting,
    /// Every rank is up and the ring answered.
    Ready,
    Failed(String),
}

/// How busy a backend is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Requests generating now.
    pub running: usize,
    /// How long the oldest of them has run.
    pub running_for: Option<std::time::Duration>,
    /// Requests accepted and waiting for their turn.
    pub waiting: usize,
}

/// What the HTTP layer needs from the engine side.
pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> Health;
    /// How busy the backend is, for `/health`.
    fn load(&self) -> Load {
        Load::default()
    }
    /// The model's tokenizer, once loaded ([`ApiError::NotReady`] before).
    fn tokenizer(&self) -> Result<Arc<dyn Tokenizer>, ApiError>;
    /// Queue a generation. Dropping the stream cancels it.
    fn submit(&self, generation: ValidGeneration) -> Result<EventStream, ApiError>;
}

#[derive(Clone)]
pub struct ApiConfig {
    /// Served as the `model` of every answer and by `/v1/models`.
    pub model_id: String,
    /// Prompt plus completion tokens per request.
    pub context_limit: u32,
    /// Required as `Authorization: Bearer KEY` on `/v1/*` when set.
    pub api_key: Option<String>,
    /// Tokens a request generates when it sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// The plan this ring runs, said by `/health` so `skulk status` can tell
    /// its ring from another plan's on the same address.
    pub plan_digest: String,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("model_id", &self.model_id)
            .field("context_limit", &self.context_limit)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("default_max_tokens", &self.default_max_tokens)
            .field("plan_digest", &self.plan_digest)
            .finish()
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    cfg: Arc<ApiConfig>,
    created: u64,
    /// Generations accepted and not yet answered in full (`/health`
    /// reports it, so a supervisor can wait for a quiet moment).
    in_flight: Arc<AtomicUsize>,
}

/// Counts one generation in flight for as long as it lives (the handler's
/// run for a whole answer, the stream's life for a streamed one).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `events`, holding `guard` until the stream is dropped.
fn counted(events: EventStream, guard: InFlight) -> EventStream {
    Box::pin(events.map(move |e| {
        let _held = &guard;
        e
    }))
}

/// The API's routes over `backend`.
pub fn router(backend: Arc<dyn Backend>, cfg: ApiConfig) -> Router {
    let state = AppState {
        backend,
        cfg: Arc::new(cfg),
        created: now(),
        in_flight: Arc::new(AtomicUsize::new(0)),
    };
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(v1)
        .fallback(|req: Request| async move { ApiError::NotFound(req.uri().path().to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Compare without an early exit (digests, so lengths leak nothing either).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    digest(a)
        .iter()
        .zip(digest(b).iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.cfg.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

async fn health(State(st): State<AppState>) -> Response {
    let in_flight = st.in_flight.load(Ordering::SeqCst);
    match st.backend.health() {
        Health::Ready => {
            let load = st.backend.load();
            let mut body = json!({
                "status": "ok",
                "plan": st.cfg.plan_digest,
                "running": load.running,
                "waiting": load.waiting,
                "inFlight": in_flight,
            });
            if let Some(age) = load.running_for {
                body["running_seconds"] = json!(age.as_secs());
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Health::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "inFlight": in_flight})),
        )
            .into_response(),
        Health::Failed(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "error": e, "inFlight": in_flight})),
        )
            .into_response(),
    }
}

async fn models(State(st): State<AppState>) -> Json<ModelList> {
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

fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError::Body {
        status: r.status().as_u16(),
        message: r.body_text(),
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::InvalidRequest {
        message: format!("invalid JSON body: {e}"),
        param: None,
    })
}

/// Tokenizing a long prompt takes a while; keep it off the I/O threads. A
/// request that did not set `max_tokens` (`asked` false) gets at most the
/// default.
async fn validated<F>(st: &AppState, asked: bool, f: F) -> Result<ValidRequest, ApiError>
where
    F: FnOnce(&dyn Tokenizer, u32) -> Result<ValidRequest, ApiError> + Send + 'static,
{
    let tokenizer = st.backend.tokenizer()?;
    let limit = st.cfg.context_limit;
    let mut v = tokio::task::spawn_blocking(move || f(&*tokenizer, limit))
        .await
        .map_err(|e| ApiError::Internal(format!("validation task failed: {e}")))??;
    if !asked {
        v.generation.max_tokens = v.generation.max_tokens.min(st.cfg.default_max_tokens);
    }
    Ok(v)
}

/// Whether a request sets its own completion length.
fn asks_max_tokens(p: &types::CommonParams) -> bool {
    p.max_tokens.is_some() || p.max_completion_tokens.is_some()
}

/// Collect a whole answer (non-streaming requests).
async fn collect(mut events: EventStream) -> Result<(String, FinishReason, Usage), ApiError> {
    let mut text = String::new();
    while let Some(ev) = events.next().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Done { finish, usage } => return Ok((text, finish, usage)),
            Event::Error(e) => return Err(e),
        }
    }
    Err(ApiError::Internal(
        "the generation ended without a result".into(),
    ))
}

async fn chat_completions(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatCompletionRequest = parse(body)?;
    let v = validated(&st, asks_max_tokens(&req.common), move |tok, limit| {
        validate::validate_chat(req, tok, limit)
    })
    .await?;
    let guard = InFlight::enter(&st.in_flight);
    let events = counted(st.backend.submit(v.generation)?, guard);
    let id = format!("chatcmpl-{:032x}", rand::random::<u128>());
    let model = st.cfg.model_id.clone();
    let created = now();
    if v.stream {
        let r = Render {
            id,
            model,
            created,
            chat: true,
            include_usage: v.include_usage,
        };
        return Ok(sse(events, r).into_response());
    }
    let (content, finish, usage) = collect(events).await?;
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
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage,
    })
    .into_response())
}

async fn completions(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(body)?;
    let v = validated(&st, asks_max_tokens(&req.common), move |tok, limit| {
        validate::validate_completion(req, tok, limit)
    })
    .await?;
    let guard = InFlight::enter(&st.in_flight);
    let events = counted(st.backend.submit(v.generation)?, guard);
    let id = format!("cmpl-{:032x}", rand::random::<u128>());
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
        return Ok(sse(events, r).into_response());
    }
    let (text, finish, usage) = collect(events).await?;
    Ok(Json(TextCompletion {
        id,
        object: "text_completion",
        created,
        model,
        choices: vec![TextChoice {
            index: 0,
            text,
            logprobs: None,
            finish_reason: Some(finish),
        }],
        usage: Some(usage),
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

impl Render {
    fn chunk(&self, delta: Delta, text: Option<String>, finish: Option<FinishReason>) -> SseEvent {
        let data = if self.chat {
            serde_json::to_string(&ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: vec![ChunkChoice {
                    index: 0,
                    delta,
                    logprobs: None,
                    finish_reason: finish,
                }],
                usage: None,
            })
        } else {
            serde_json::to_string(&TextCompletion {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: vec![TextChoice {
                    index: 0,
                    text: text.unwrap_or_default(),
                    logprobs: None,
                    finish_reason: finish,
                }],
                usage: None,
            })
        };
        SseEvent::default().data(data.expect("chunks serialize"))
    }

    fn first(&self) -> Option<SseEvent> {
        self.chat.then(|| {
            self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                },
                None,
                None,
            )
        })
    }

    fn text(&self, t: String) -> SseEvent {
        self.chunk(
            Delta {
                role: None,
                content: Some(t.clone()),
            },
            Some(t),
            None,
        )
    }

    fn usage(&self, usage: Usage) -> SseEvent {
        let data = if self.chat {
            serde_json::to_string(&ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage: Some(usage),
            })
        } else {
            serde_json::to_string(&TextCompletion {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage: Some(usage),
            })
        };
        SseEvent::default().data(data.expect("chunks serialize"))
    }

    /// The events for one backend event, and whether the stream goes on.
    fn render(&self, ev: Option<Event>) -> (Vec<SseEvent>, bool) {
        match ev {
            Some(Event::Text(t)) if t.is_empty() => (vec![], true),
            Some(Event::Text(t)) => (vec![self.text(t)], true),
            Some(Event::Done { finish, usage }) => {
                let mut out = vec![self.chunk(Delta::default(), None, Some(finish))];
                if self.include_usage {
                    out.push(self.usage(usage));
                }
                out.push(SseEvent::default().data("[DONE]"));
                (out, false)
            }
            Some(Event::Error(e)) => (vec![SseEvent::default().data(e.body().to_string())], false),
            // The backend dropped the stream without a result: it cut off a
            // consumer that read too slowly.
            None => (
                vec![SseEvent::default().data(ApiError::SlowConsumer.body().to_string())],
                false,
            ),
        }
    }
}

fn sse(events: EventStream, r: Render) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let first = r.first();
    let state = Some((events, r));
    let body = futures::stream::unfold(state, |state| async move {
        let (mut events, r) = state?;
        let ev = events.next().await;
        let (out, more) = r.render(ev);
        Some((
            futures::stream::iter(out),
            if more { Some((events, r)) } else { None },
        ))
    })
    .flatten();
    let stream = futures::stream::iter(first).chain(body).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Serve `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
