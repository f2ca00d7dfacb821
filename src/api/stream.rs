//! A generation's backend events turned into parsed answer events, the
//! common ground of every dialect's renderer: text through the answer's
//! [`OutputParser`], token log-probabilities with their text, the finish
//! reason (tool calls, a stop sequence) and the time-to-first-token and
//! inter-token metrics.
//!
//! Invariant: every stream ends with exactly one `Done` or `Error`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};

use crate::engine::{TokenLogprobs, Tokenizer};

use super::error::ApiError;
use super::metrics::ApiMetrics;
use super::parse::{Delta, OutputParser, ParserSpec};
use super::types::{FinishReason, LogprobEntry, TopLogprob, Usage};
use super::{Event, EventStream};

/// Why an answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// End of generation.
    Stop,
    /// One of the request's stop sequences.
    StopSequence(String),
    /// The token budget or the context.
    Length,
    /// The answer was tool calls.
    ToolCalls,
}

impl Finish {
    pub fn openai(&self) -> FinishReason {
        match self {
            Finish::Stop | Finish::StopSequence(_) => FinishReason::Stop,
            Finish::Length => FinishReason::Length,
            Finish::ToolCalls => FinishReason::ToolCalls,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    Delta(Delta),
    /// Log-probabilities of generated tokens, in order.
    Logprobs(Vec<LogprobEntry>),
    Done {
        finish: Finish,
        usage: Usage,
    },
    Error(ApiError),
}

pub type ChatStream = Pin<Box<dyn Stream<Item = ChatEvent> + Send>>;

struct State {
    events: EventStream,
    parser: OutputParser,
    tok: Arc<dyn Tokenizer>,
    metrics: Arc<ApiMetrics>,
    start: Instant,
    last_token: Option<Instant>,
    stop_sequence: Option<String>,
    queue: VecDeque<ChatEvent>,
    ended: bool,
}

/// The parsed events of `events`; `start` is when the request arrived.
pub fn chat_events(
    events: EventStream,
    parser: ParserSpec,
    tok: Arc<dyn Tokenizer>,
    metrics: Arc<ApiMetrics>,
    start: Instant,
) -> ChatStream {
    let state = State {
        events,
        parser: OutputParser::new(parser),
        tok,
        metrics,
        start,
        last_token: None,
        stop_sequence: None,
        queue: VecDeque::new(),
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.queue.pop_front() {
                return Some((ev, s));
            }
            if s.ended {
                return None;
            }
            let ev = s.events.next().await;
            s.handle(ev);
        }
    }))
}

impl State {
    fn token_arrived(&mut self) {
        let now = Instant::now();
        match self.last_token {
            None => self.metrics.ttft.observe(now - self.start),
            Some(t) => self.metrics.inter_token.observe(now - t),
        }
        self.last_token = Some(now);
    }

    fn handle(&mut self, ev: Option<Event>) {
        match ev {
            Some(Event::Text(t)) => {
                self.token_arrived();
                let deltas = self.parser.push(&t);
                self.queue.extend(deltas.into_iter().map(ChatEvent::Delta));
            }
            Some(Event::Logprobs(lp)) => {
                let entry = logprob_entry(&*self.tok, &lp);
                match self.queue.back_mut() {
                    Some(ChatEvent::Logprobs(v)) => v.push(entry),
                    _ => self.queue.push_back(ChatEvent::Logprobs(vec![entry])),
                }
            }
            Some(Event::StopSequence(s)) => self.stop_sequence = Some(s),
            Some(Event::Done { finish, usage }) => {
                if self.last_token.is_none() && usage.completion_tokens > 0 {
                    self.token_arrived();
                }
                let deltas = self.parser.finish();
                self.queue.extend(deltas.into_iter().map(ChatEvent::Delta));
                self.metrics
                    .tokens(usage.prompt_tokens, usage.completion_tokens);
                let finish = match (finish, self.stop_sequence.take()) {
                    (FinishReason::Length, _) => Finish::Length,
                    _ if self.parser.n_calls() > 0 => Finish::ToolCalls,
                    (_, Some(s)) => Finish::StopSequence(s),
                    _ => Finish::Stop,
                };
                self.queue.push_back(ChatEvent::Done { finish, usage });
                self.ended = true;
            }
            Some(Event::Error(e)) => {
                self.queue.push_back(ChatEvent::Error(e));
                self.ended = true;
            }
            // The backend dropped the stream without a result: it cut off a
            // consumer that read too slowly.
            None => {
                self.queue
                    .push_back(ChatEvent::Error(ApiError::SlowConsumer));
                self.ended = true;
            }
        }
    }
}

/// A token's log-probabilities with the tokens' text and bytes.
pub fn logprob_entry(tok: &dyn Tokenizer, lp: &TokenLogprobs) -> LogprobEntry {
    let text = |id: i32| {
        let bytes = tok.token_to_piece(id);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (token, bytes) = text(lp.token);
    LogprobEntry {
        token,
        logprob: lp.logprob,
        bytes,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(id, logprob)| {
                let (token, bytes) = text(id);
                TopLogprob {
                    token,
                    logprob,
                    bytes,
                }
            })
            .collect(),
    }
}

/// A whole answer (non-streaming requests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub content: String,
    pub reasoning: String,
    /// (id, name, arguments).
    pub calls: Vec<(String, String, String)>,
    pub logprobs: Vec<LogprobEntry>,
    pub finish: Option<Finish>,
    pub usage: Usage,
}

/// Collects `stream` into one answer.
pub async fn collect(mut stream: ChatStream) -> Result<Answer, ApiError> {
    let mut a = Answer::default();
    while let Some(ev) = stream.next().await {
        match ev {
            ChatEvent::Delta(Delta::Content(c)) => a.content.push_str(&c),
            ChatEvent::Delta(Delta::Reasoning(r)) => a.reasoning.push_str(&r),
            ChatEvent::Delta(Delta::ToolCallStart { id, name, .. }) => {
                a.calls.push((id, name, String::new()))
            }
            ChatEvent::Delta(Delta::ToolCallArgs { index, args }) => {
                if let Some(c) = a.calls.get_mut(index) {
                    c.2.push_str(&args);
                }
            }
            ChatEvent::Logprobs(v) => a.logprobs.extend(v),
            ChatEvent::Done { finish, usage } => {
                a.finish = Some(finish);
                a.usage = usage;
                return Ok(a);
            }
            ChatEvent::Error(e) => return Err(e),
        }
    }
    Err(ApiError::Internal(
        "the generation ended without a result".into(),
    ))
}
