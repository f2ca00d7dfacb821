//! The one place where API failures become HTTP statuses and bodies, in each
//! dialect's own shape: OpenAI's `{"error": {"message", "type", "param",
//! "code"}}`, Anthropic's `{"type": "error", "error": {"type", "message"}}`
//! and Ollama's `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A request that cannot be served as sent (400).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// The prompt (plus `max_tokens`) does not fit the context (400).
    #[error("{message}")]
    ContextLengthExceeded { message: String },
    #[error("missing or incorrect API key; send it as `Authorization: Bearer KEY` (or `x-api-key: KEY`)")]
    Unauthorized,
    #[error("no route for `{0}`")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Body rejected before parsing (too large, unreadable).
    #[error("{message}")]
    Body { status: u16, message: String },
    #[error("too many requests waiting: the queue holds at most {capacity}; retry later")]
    QueueFull { capacity: usize },
    #[error("the ring is not up yet (ranks joining or loading the model); retry when `/health` answers 200")]
    NotReady,
    /// A rank was lost or aborted; the server is going down.
    #[error("{0}")]
    RingFailed(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(
        "the stream was cut off because the client read too slowly; the generation was cancelled"
    )]
    SlowConsumer,
    /// The engine failed on this request.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } | ApiError::ContextLengthExceeded { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Body { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady | ApiError::RingFailed(_) | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::SlowConsumer | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::ContextLengthExceeded { .. }
            | ApiError::Unauthorized
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::Body { .. } => "invalid_request_error",
            ApiError::QueueFull { .. } => "rate_limit_error",
            _ => "server_error",
        }
    }

    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            ApiError::InvalidRequest { .. } | ApiError::Body { .. } => return None,
            ApiError::ContextLengthExceeded { .. } => "context_length_exceeded",
            ApiError::Unauthorized => "invalid_api_key",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::NotReady => "ring_not_ready",
            ApiError::RingFailed(_) => "ring_failed",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::SlowConsumer => "slow_consumer",
            ApiError::Internal(_) => "engine_error",
        })
    }

    /// The `{"error": {...}}` body, also sent as the last event of a stream
    /// that fails.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            ApiError::InvalidRequest { param, .. } => param.clone(),
            ApiError::ContextLengthExceeded { .. } => Some("messages".to_string()),
            _ => None,
        };
        json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": param,
                "code": self.code(),
            }
        })
    }

    /// Anthropic's error `type` for this failure.
    pub fn anthropic_type(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::ContextLengthExceeded { .. }
            | ApiError::MethodNotAllowed
            | ApiError::Body { .. } => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::QueueFull { .. } => "rate_limit_error",
            ApiError::NotReady | ApiError::RingFailed(_) | ApiError::ShuttingDown => {
                "overloaded_error"
            }
            ApiError::SlowConsumer | ApiError::Internal(_) => "api_error",
        }
    }

    /// The body in `dialect`'s shape (also a failing stream's last event).
    pub fn body_in(&self, dialect: Dialect) -> serde_json::Value {
        match dialect {
            Dialect::OpenAi => self.body(),
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.to_string()},
            }),
            Dialect::Ollama => json!({"error": self.to_string()}),
        }
    }

    /// The HTTP response in `dialect`'s shape.
    pub fn response_in(self, dialect: Dialect) -> Response {
        let mut resp = (self.status(), Json(self.body_in(dialect))).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// The API dialects, each with its own error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Dialect {
    /// The dialect of a route.
    pub fn of_path(path: &str) -> Dialect {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else if path.starts_with("/api/") {
            Dialect::Ollama
        } else {
            Dialect::OpenAi
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.response_in(Dialect::OpenAi)
    }
}

/// An error answered in Anthropic's shape.
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        self.0.response_in(Dialect::Anthropic)
    }
}

/// An error answered in Ollama's shape.
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.response_in(Dialect::Ollama)
    }
}
