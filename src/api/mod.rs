//! The HTTP API served by rank 0 (axum), in three dialects: OpenAI
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/models`), Anthropic
//! (`/v1/messages`) and Ollama (`/api/chat`, `/api/generate`, `/api/tags`,
//! `/api/show`, `/api/version`, `/api/ps`), plus Prometheus `/metrics`.
//!
//! The HTTP layer knows only the [`Backend`] trait: it authenticates, parses
//! and validates each request once (every dialect into the same
//! [`chat::ChatRequest`], rendered with the model's own template and checked
//! against the card's [`profile::Profile`]), hands the [`ValidGeneration`]
//! to the backend and turns the backend's [`Event`]s, through the answer's
//! parser ([`stream`]), into each dialect's JSON answer or stream. Every
//! failure becomes an HTTP status and a body in the dialect's own error
//! shape in one place, [`ApiError`].
//!
//! Streaming: a client that disconnects drops its event stream, which the
//! backend sees as a cancelled request. How a slow reader is kept from
//! stalling others is the backend's policy (see `rank`); when the backend
//! cuts a stream off, the stream ends with an error event.

mod anthropic;
pub mod chat;
mod error;
pub mod metrics;
mod ollama;
mod openai;
pub mod parse;
pub mod profile;
pub mod schema;
pub mod stream;
pub mod template;
pub mod tools;
pub mod types;
pub mod validate;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use error::{ApiError, Dialect};
pub use metrics::{ApiMetrics, RankMetrics};
pub use profile::{CardChat, Profile};
pub use validate::{Limits, ValidGeneration, ValidRequest};

use crate::engine::{TokenLogprobs, Tokenizer};
use types::{FinishReason, Usage};

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
/// strings removed), each preceded by its token's log-probabilities when
/// asked for, the stop sequence that ended it if one did, then exactly one
/// `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    /// The next token's log-probabilities (before its text).
    Logprobs(TokenLogprobs),
    /// The stop sequence that ended the generation (before `Done`).
    StopSequence(String),
    Done {
        finish: FinishReason,
        usage: Usage,
    },
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
    /// Required as `Authorization: Bearer KEY` (or `x-api-key: KEY`) on
    /// every route but `/health` when set.
    pub api_key: Option<String>,
    /// The card's chat settings (tools, reasoning, renderer).
    pub card: CardChat,
    /// This rank's own measurements, served with the API's on `/metrics`.
    pub rank_metrics: Arc<RankMetrics>,
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
            .field("card", &self.card)
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
    profile: Arc<OnceLock<Arc<Profile>>>,
    metrics: Arc<ApiMetrics>,
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
    Box::pin(futures::StreamExt::map(events, move |e| {
        let _held = &guard;
        e
    }))
}

impl AppState {
    /// Queue a generation, counted in flight (`/health`'s `inFlight`, so a
    /// supervisor can wait for a quiet moment) until its stream is dropped.
    fn submit(&self, generation: ValidGeneration) -> Result<EventStream, ApiError> {
        let guard = InFlight::enter(&self.in_flight);
        Ok(counted(self.backend.submit(generation)?, guard))
    }

    /// The model's profile, resolved once the tokenizer is loaded.
    fn profile(&self) -> Result<(Arc<Profile>, Arc<dyn Tokenizer>), ApiError> {
        let tok = self.backend.tokenizer()?;
        let p = self.profile.get_or_init(|| {
            let p = Profile::resolve(self.cfg.card.clone(), &*tok);
            for note in &p.notes {
                crate::output::progress(format!("skulk rank 0: {note}"));
            }
            Arc::new(p)
        });
        Ok((p.clone(), tok))
    }

    /// Runs `f` (tokenizing, rendering: a while for a long prompt) off the
    /// I/O threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Profile, &dyn Tokenizer, Limits) -> Result<T, ApiError> + Send + 'static,
    {
        let limits = Limits {
            context: self.cfg.context_limit,
            default_max_tokens: self.cfg.default_max_tokens,
        };
        // The first request also resolves the profile (rendering probes of
        // the template), which the others wait for: off the I/O threads too.
        let st = self.clone();
        tokio::task::spawn_blocking(move || {
            let (profile, tok) = st.profile()?;
            f(&profile, &*tok, limits)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("validation task failed: {e}")))?
    }
}

/// The API's routes over `backend`.
pub fn router(backend: Arc<dyn Backend>, cfg: ApiConfig) -> Router {
    let state = AppState {
        backend,
        cfg: Arc::new(cfg),
        created: now(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        profile: Arc::new(OnceLock::new()),
        metrics: Arc::new(ApiMetrics::default()),
    };
    let authed = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/version", get(ollama::version))
        .route("/api/ps", get(ollama::ps))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(authed)
        .fallback(|req: Request| async move {
            let path = req.uri().path().to_owned();
            ApiError::NotFound(path.clone()).response_in(Dialect::of_path(&path))
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::MethodNotAllowed.response_in(Dialect::of_path(req.uri().path()))
        })
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A router serving only `/metrics` of `rank` (ranks other than 0).
pub fn metrics_router(rank: Arc<RankMetrics>, api_key: Option<String>) -> Router {
    async fn serve(
        State((rank, key)): State<(Arc<RankMetrics>, Option<String>)>,
        req: Request,
    ) -> Response {
        if let Some(key) = &key {
            if !authorized(&req, key) {
                return ApiError::Unauthorized.into_response();
            }
        }
        prometheus_text(rank.render())
    }
    Router::new()
        .route("/metrics", get(serve))
        .fallback(|req: Request| async move { ApiError::NotFound(req.uri().path().to_owned()) })
        .with_state((rank, api_key))
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

/// `Authorization: Bearer KEY` (OpenAI, Ollama) or `x-api-key: KEY`
/// (Anthropic) matches `key`.
fn authorized(req: &Request, key: &str) -> bool {
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let x_api_key = h
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    [bearer, x_api_key]
        .into_iter()
        .flatten()
        .any(|g| same_secret(g.as_bytes(), key.as_bytes()))
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.cfg.api_key {
        if !authorized(&req, key) {
            return ApiError::Unauthorized.response_in(Dialect::of_path(req.uri().path()));
        }
    }
    next.run(req).await
}

/// Counts every answer by route and status.
async fn count(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    st.metrics.request(&route, resp.status().as_u16());
    resp
}

fn prometheus_text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    let mut body = st.metrics.render(st.backend.load());
    body.push_str(&st.cfg.rank_metrics.render());
    prometheus_text(body)
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

/// A JSON body, with errors naming the field at fault
/// (`messages[0].content: invalid type ...`).
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError::Body {
        status: r.status().as_u16(),
        message: r.body_text(),
    })?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() || inner.is_syntax() || inner.is_eof() {
            ApiError::InvalidRequest {
                message: format!("invalid JSON body: {inner}"),
                param: None,
            }
        } else {
            ApiError::invalid(format!("`{path}`: {inner}"), path)
        }
    })
}

/// When a request arrived (for time to first token).
fn arrived() -> Instant {
    Instant::now()
}

/// A random id with `prefix`.
fn new_id(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_the_shape_of_their_route() {
        assert_eq!(Dialect::of_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/api/chat"), Dialect::Ollama);
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
        let e = ApiError::invalid("`max_tokens` is `0`; it must be at least 1", "max_tokens");
        assert_eq!(
            e.body_in(Dialect::Anthropic),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "`max_tokens` is `0`; it must be at least 1"}})
        );
        assert_eq!(
            e.body_in(Dialect::Ollama),
            json!({"error": "`max_tokens` is `0`; it must be at least 1"})
        );
        assert_eq!(e.body_in(Dialect::OpenAi)["error"]["param"], "max_tokens");
    }
}
