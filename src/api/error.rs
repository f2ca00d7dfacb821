//! The one place where API failures become HTTP statuses and OpenAI-shaped
//! bodies: `{"error": {"message", "type", "param", "code"}}`.

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
        param: Option<&'static str>,
    },
    /// The prompt (plus `max_tokens`) does not fit the context (400).
    #[error("{message}")]
    ContextLengthExceeded { message: String },
    #[error("missing or incorrect API key; send it as `Authorization: Bearer KEY`")]
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
    pub fn invalid(message: impl Into<String>, param: &'static str) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param),
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
            ApiError::InvalidRequest { param, .. } => *param,
            ApiError::ContextLengthExceeded { .. } => Some("messages"),
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
