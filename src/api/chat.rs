//! One chat request whatever the dialect (OpenAI, Anthropic, Ollama), and
//! its preparation into what the backend runs: the prompt rendered with the
//! model's template, the grammar that enforces structured output or a forced
//! tool call, and the parser that reads the answer back.
//!
//! Invariant: every request option either shapes the generation or is
//! refused with a 400 naming the dialect's field; nothing is dropped.

use serde_json::{json, Map, Value};

use crate::card::ReasoningEffort;
use crate::engine::{GrammarSpec, Tokenizer};

use super::error::ApiError;
use super::parse::ParserSpec;
use super::profile::{effort_name, Profile, ReasoningMarkers, Renderer, ToolDialect};
use super::schema::{literal, Grammar, SchemaCompiler};
use super::template::RenderError;
use super::tools::{call_text, hermes_prompt, result_text, CallGrammar, Tool, ToolCall};
use super::validate::{finish, Limits, Sampling, ValidGeneration};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// An assistant turn's reasoning (templates that keep it may write it).
    pub reasoning: Option<String>,
    /// An assistant turn's calls.
    pub tool_calls: Vec<ToolCall>,
    /// A tool turn: which call it answers, and the function's name.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            reasoning: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    JsonObject,
    /// Valid against this schema.
    JsonSchema(Value),
}

/// The request's reasoning options, with the dialect's field names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Thinking {
    /// `enable_thinking`, Anthropic's `thinking`, Ollama's `think`.
    pub enable: Option<(bool, &'static str)>,
    pub effort: Option<(ReasoningEffort, &'static str)>,
}

/// The dialect's names of the fields errors point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub messages: &'static str,
    pub tools: &'static str,
    pub tool_choice: &'static str,
    pub format: &'static str,
}

impl Fields {
    pub const OPENAI: Fields = Fields {
        messages: "messages",
        tools: "tools",
        tool_choice: "tool_choice",
        format: "response_format",
    };
}

/// A dialect-neutral chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub format: OutputFormat,
    pub thinking: Thinking,
    pub fields: Fields,
}

/// A prepared chat: what the backend runs and how to read its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedChat {
    pub generation: ValidGeneration,
    pub parser: ParserSpec,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid(message, param)
}

/// Renders, constrains and tokenizes `req` for the model `profile`
/// describes.
pub fn prepare(
    req: ChatRequest,
    sampling: Sampling,
    profile: &Profile,
    tok: &dyn Tokenizer,
    limits: Limits,
) -> Result<PreparedChat, ApiError> {
    let f = req.fields;
    if req.messages.is_empty() {
        return Err(bad(format!("`{}` is empty", f.messages), f.messages));
    }
    // Tools: which dialect, and whether the template writes them.
    let offered = !req.tools.is_empty() && req.tool_choice != ToolChoice::None;
    if req.tool_choice != ToolChoice::Auto
        && req.tool_choice != ToolChoice::None
        && req.tools.is_empty()
    {
        return Err(bad(
            format!(
                "`{}` asks for a tool call but `{}` is empty",
                f.tool_choice, f.tools
            ),
            f.tool_choice,
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in req.tools.iter().enumerate() {
        if t.name.is_empty()
            || !t
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(bad(
                format!(
                    "`{}[{i}]` has the name `{}`; names are letters, digits, `_`, `-` and `.`",
                    f.tools, t.name
                ),
                f.tools,
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(bad(
                format!("`{}` has two functions named `{}`", f.tools, t.name),
                f.tools,
            ));
        }
    }
    if let ToolChoice::Function(name) = &req.tool_choice {
        if !seen.contains(name.as_str()) {
            return Err(bad(
                format!(
                    "`{}` names the function `{name}`, which is not among the `{}`",
                    f.tool_choice, f.tools
                ),
                f.tool_choice,
            ));
        }
    }
    let dialect = if offered {
        Some(profile.tools.clone().map_err(|reason| {
            bad(
                format!("`{}` cannot be used with this model: {reason}", f.tools),
                f.tools,
            )
        })?)
    } else {
        None
    };
    let (template_tools, template_calls, string_args, source) = match &profile.renderer {
        Renderer::Jinja {
            tools,
            tool_calls,
            string_args,
            source,
            ..
        } => (*tools, *tool_calls, *string_args, source.as_str()),
        Renderer::Builtin => (false, false, false, ""),
    };
    // A template that cannot write tools gets them in the system prompt, in
    // skulk's Hermes convention.
    let inject = offered && !template_tools;
    let dialect = if inject {
        Some(ToolDialect::Hermes)
    } else {
        dialect
    };

    let vars = thinking_vars(&req.thinking, profile)?;
    let disabled = thinking_disabled(&req.thinking, profile);

    // Messages as the template sees them.
    let must_call = match &req.tool_choice {
        ToolChoice::Function(n) => Some(n.as_str()),
        _ => None,
    };
    let mut messages = req.messages;
    if inject {
        let prompt = hermes_prompt(&req.tools, must_call);
        match messages.first_mut() {
            Some(m) if m.role == Role::System => {
                m.content = format!("{}\n\n{prompt}", m.content);
            }
            _ => messages.insert(0, Message::new(Role::System, prompt)),
        }
    }
    // An assistant turn last is a prefix the answer continues.
    let prefill = match messages.last() {
        Some(m) if m.role == Role::Assistant && m.tool_calls.is_empty() && messages.len() > 1 => {
            messages.pop().map(|m| m.content)
        }
        _ => None,
    };
    let text_calls = !template_calls;
    let mut text = match &profile.renderer {
        Renderer::Jinja { template, .. } => {
            let msgs: Vec<Value> = messages
                .iter()
                .map(|m| template_message(m, text_calls, string_args))
                .collect();
            let mut ctx = Map::new();
            ctx.insert("messages".into(), Value::Array(msgs));
            if offered && template_tools {
                ctx.insert(
                    "tools".into(),
                    Value::Array(req.tools.iter().map(Tool::openai_json).collect()),
                );
            }
            ctx.insert("add_generation_prompt".into(), json!(true));
            ctx.insert(
                "bos_token".into(),
                json!(profile.bos.clone().unwrap_or_default()),
            );
            ctx.insert(
                "eos_token".into(),
                json!(profile.eos.clone().unwrap_or_default()),
            );
            ctx.extend(vars);
            template.render(&Value::Object(ctx)).map_err(|e| match e {
                RenderError::Refused(_) => bad(e.to_string(), f.messages),
                RenderError::Failed(_) => ApiError::Internal(e.to_string()),
            })?
        }
        Renderer::Builtin => {
            let msgs: Vec<crate::engine::ChatMessage> = messages
                .iter()
                .map(|m| {
                    let v = template_message(m, true, false);
                    crate::engine::ChatMessage {
                        role: v["role"].as_str().unwrap_or("user").to_string(),
                        content: v["content"].as_str().unwrap_or("").to_string(),
                    }
                })
                .collect();
            tok.apply_chat_template(&msgs, true)
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
    };
    if let Some(p) = &prefill {
        text.push_str(p);
    }
    let think_open = match profile.reasoning.markers {
        ReasoningMarkers::Delimited(open, _) => text.trim_end().ends_with(open),
        _ => false,
    };

    // The grammar: a forced call, structured output, or a lazy call.
    let mut g = Grammar::new();
    let calls = match dialect {
        Some(d) => {
            // A named function is called once.
            let cg = CallGrammar {
                dialect: d,
                mistral_args: source.contains("[ARGS]"),
                tools: &req.tools,
                parallel: req.parallel_tool_calls
                    && !matches!(req.tool_choice, ToolChoice::Function(_)),
            };
            let forced = matches!(
                req.tool_choice,
                ToolChoice::Required | ToolChoice::Function(_)
            );
            let selected: Vec<Tool> = match &req.tool_choice {
                ToolChoice::Function(n) => {
                    req.tools.iter().filter(|t| &t.name == n).cloned().collect()
                }
                _ => req.tools.clone(),
            };
            let cg = CallGrammar {
                tools: &selected,
                ..cg
            };
            match cg.add(&mut g) {
                Ok(rule) => Some((rule, forced, cg.triggers())),
                Err(e) if forced || req.format != OutputFormat::Text => {
                    return Err(bad(
                        format!(
                            "`{}` function `{}`: its `parameters` schema cannot be enforced: {}",
                            f.tools, selected[e.tool].name, e.error
                        ),
                        f.tools,
                    ))
                }
                // `auto` without structured output: the model may call
                // freely, unchecked.
                Err(_) => {
                    g = Grammar::new();
                    None
                }
            }
        }
        None => None,
    };
    let answer = match &req.format {
        OutputFormat::Text => None,
        OutputFormat::JsonObject => {
            let obj = g.primitive("object");
            Some(obj)
        }
        OutputFormat::JsonSchema(schema) => {
            let mut c = SchemaCompiler::new(schema);
            Some(c.value(&mut g, schema, "", "answer").map_err(|e| {
                bad(
                    format!("`{}` schema cannot be enforced: {e}", f.format),
                    f.format,
                )
            })?)
        }
    };
    let think = match profile.reasoning.markers {
        ReasoningMarkers::Delimited(open, close) if !disabled => Some((open, close)),
        _ => None,
    };
    let grammar = match (calls, answer) {
        (None, None) => None,
        (Some((calls, forced, triggers)), None) => {
            let root = with_think(&mut g, &calls, think, think_open, !forced);
            g.set("root", root);
            Some(GrammarSpec {
                gbnf: g.render(),
                triggers: if forced { Vec::new() } else { triggers },
            })
        }
        (calls, Some(answer)) => {
            let body = match calls {
                Some((c, true, _)) => c,
                Some((c, false, _)) => g.rule("answer-or-calls", format!("{answer} | {c}")),
                None => answer,
            };
            let root = with_think(&mut g, &body, think, think_open, false);
            g.set("root", root);
            Some(GrammarSpec {
                gbnf: g.render(),
                triggers: Vec::new(),
            })
        }
    };
    if let Some(spec) = &grammar {
        // Checked here, against this vocabulary, so the sampling rank never
        // meets a grammar it cannot build.
        tok.constraint(spec)
            .map_err(|e| ApiError::Internal(format!("the request's grammar does not load: {e}")))?;
    }

    let parser = profile.parser(dialect, think_open);
    let add_special = !profile
        .bos
        .as_deref()
        .is_some_and(|b| !b.is_empty() && text.starts_with(b));
    let prompt = tok
        .tokenize(&text, add_special)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut sampling = sampling;
    sampling.params.grammar = grammar;
    let constrained = sampling.params.grammar.is_some();
    let mut generation = finish(prompt, sampling, limits, f.messages)?;
    // The parser reads markers written as control tokens; and the client
    // must see the very text the grammar saw.
    generation.render_special = parser != ParserSpec::Plain || constrained;
    Ok(PreparedChat { generation, parser })
}

/// `body` after an optional reasoning block (required to close when the
/// prompt opened it); for a lazy grammar the body is all there is.
fn with_think(
    g: &mut Grammar,
    body: &str,
    think: Option<(&str, &str)>,
    open: bool,
    lazy: bool,
) -> String {
    let Some((o, c)) = think.filter(|_| !lazy) else {
        return body.to_string();
    };
    let mut cs = c.chars();
    let (c0, c1) = (cs.next().unwrap_or('<'), cs.next().unwrap_or('/'));
    let class = |ch: char| match ch {
        '^' | ']' | '\\' | '-' | '[' => format!("\\{ch}"),
        ch => ch.to_string(),
    };
    let text = g.rule(
        "think-text",
        format!(
            "([^{}] | {} [^{}])*",
            class(c0),
            literal(&c0.to_string()),
            class(c1)
        ),
    );
    let close = format!("{text} {} \"\\n\"{{0,2}}", literal(c));
    let block = if open {
        close
    } else {
        format!("({} {close})?", literal(o))
    };
    g.rule("answer-root", format!("{block} {body}"))
}

/// A message as chat templates expect it (OpenAI's shape; arguments as
/// objects unless `string_args`). `text_calls`: calls and tool results
/// become text, for templates that do not write them.
fn template_message(m: &Message, text_calls: bool, string_args: bool) -> Value {
    let mut v = Map::new();
    let mut content = m.content.clone();
    let mut role = m.role.as_str();
    if text_calls {
        if m.role == Role::Assistant {
            for c in &m.tool_calls {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&call_text(c));
            }
        }
        if m.role == Role::Tool {
            role = "user";
            content = result_text(&m.content);
        }
    } else if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let args: Value = if string_args {
                    Value::String(c.arguments.clone())
                } else {
                    serde_json::from_str(&c.arguments)
                        .unwrap_or_else(|_| Value::String(c.arguments.clone()))
                };
                json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}})
            })
            .collect();
        v.insert("tool_calls".into(), Value::Array(calls));
    }
    v.insert("role".into(), json!(role));
    v.insert("content".into(), json!(content));
    if let Some(r) = &m.reasoning {
        v.insert("reasoning_content".into(), json!(r));
    }
    if !text_calls {
        if let Some(id) = &m.tool_call_id {
            v.insert("tool_call_id".into(), json!(id));
        }
        if let Some(n) = &m.name {
            v.insert("name".into(), json!(n));
        }
    }
    Value::Object(v)
}

/// Template variables for the request's reasoning options, refused with a
/// 400 naming the card where the card does not allow them.
fn thinking_vars(t: &Thinking, p: &Profile) -> Result<Map<String, Value>, ApiError> {
    let id = &p.card.model_id;
    let r = &p.reasoning;
    let mut vars = Map::new();
    if let Some((on, field)) = t.enable {
        if !r.toggle {
            return Err(bad(
                format!(
                    "`{field}` is not supported by this model: its card `{id}` does not set \
                     `reasoning.supportsToggle: true`\n\nhint: leave `{field}` out"
                ),
                field,
            ));
        }
        vars.insert("enable_thinking".into(), json!(on));
        vars.insert("thinking".into(), json!(on));
    }
    if let Some((effort, field)) = t.effort {
        let off = r.disabled_effort == Some(effort) || effort == ReasoningEffort::None;
        let allowed = r.effort || (off && r.toggle);
        if !allowed {
            return Err(bad(
                format!(
                    "`{field}` is not supported by this model: its card `{id}` sets neither \
                     `reasoning.supportsBudget: true` nor a `reasoning.defaultEffort`\n\nhint: leave `{field}` out"
                ),
                field,
            ));
        }
        vars.insert("reasoning_effort".into(), json!(effort_name(effort)));
        if off && r.toggle && !vars.contains_key("enable_thinking") {
            vars.insert("enable_thinking".into(), json!(false));
            vars.insert("thinking".into(), json!(false));
        }
    } else if let Some(d) = r.default_effort {
        vars.insert("reasoning_effort".into(), json!(effort_name(d)));
    }
    Ok(vars)
}

fn thinking_disabled(t: &Thinking, p: &Profile) -> bool {
    t.enable.is_some_and(|(on, _)| !on)
        || t.effort.is_some_and(|(e, _)| {
            e == ReasoningEffort::None || p.reasoning.disabled_effort == Some(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::profile::CardChat;
    use crate::api::validate::{sampling, RawSampling};
    use crate::engine::{ChatMessage, Constraint, EngineError};

    /// SmolLM2's template: it knows nothing of tools.
    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// One token per byte, a Jinja template, a grammar check that accepts.
    struct Bytes(Option<&'static str>);
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
        fn chat_template(&self) -> Option<String> {
            self.0.map(str::to_string)
        }
        fn constraint(&self, _: &GrammarSpec) -> Result<Box<dyn Constraint>, EngineError> {
            struct All;
            impl Constraint for All {
                fn apply(&mut self, _: &mut [(i32, f32)]) {}
                fn accept(&mut self, _: i32) {}
            }
            Ok(Box::new(All))
        }
    }

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            messages,
            tools: vec![],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            format: OutputFormat::Text,
            thinking: Thinking::default(),
            fields: Fields::OPENAI,
        }
    }

    fn run(tok: &Bytes, req: ChatRequest) -> Result<(String, PreparedChat), ApiError> {
        let profile = Profile::resolve(
            CardChat {
                model_id: "local/m".into(),
                ..CardChat::default()
            },
            tok,
        );
        let s = sampling(RawSampling {
            max_tokens: Some((8, "max_tokens")),
            ..RawSampling::default()
        })
        .unwrap();
        let p = prepare(req, s, &profile, tok, Limits::context(4096))?;
        let text =
            String::from_utf8(p.generation.prompt.iter().map(|&t| t as u8).collect()).unwrap();
        Ok((text, p))
    }

    fn user(text: &str) -> Message {
        Message::new(Role::User, text)
    }

    #[test]
    fn a_template_without_tools_gets_them_in_the_system_prompt() {
        let tok = Bytes(Some(CHATML));
        let mut req = request(vec![user("Weather in Paris?")]);
        req.tools = vec![weather()];
        let (text, p) = run(&tok, req).unwrap();
        assert!(text.starts_with("<|im_start|>system\n# Tools\n"), "{text}");
        assert!(text.contains("\"name\": \"get_weather\""), "{text}");
        assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
        assert!(matches!(
            p.parser,
            ParserSpec::Marked {
                tools: Some(crate::api::parse::ToolSyntax::Hermes),
                ..
            }
        ));
        // `auto`: a lazy grammar that wakes at `<tool_call>`.
        let g = p.generation.params.grammar.unwrap();
        assert_eq!(
            g.triggers,
            vec![r"[\s\S]*?(<tool_call>)[\s\S]*".to_string()]
        );
        assert!(g.gbnf.starts_with("root ::= calls\n"), "{}", g.gbnf);
        assert!(p.generation.render_special);
    }

    #[test]
    fn a_named_choice_forces_that_call() {
        let tok = Bytes(Some(CHATML));
        let mut req = request(vec![user("Weather?")]);
        req.tools = vec![weather()];
        req.tool_choice = ToolChoice::Function("get_weather".into());
        req.parallel_tool_calls = false;
        let (text, p) = run(&tok, req).unwrap();
        assert!(text.contains("Call `get_weather` now."), "{text}");
        let g = p.generation.params.grammar.unwrap();
        assert!(g.triggers.is_empty());
        assert!(g.gbnf.contains("\"\\\"get_weather\\\"\""), "{}", g.gbnf);
    }

    #[test]
    fn bad_tool_requests_are_400s_naming_the_field() {
        let tok = Bytes(Some(CHATML));
        let mut req = request(vec![user("x")]);
        req.tools = vec![weather()];
        req.tool_choice = ToolChoice::Function("nope".into());
        let e = run(&tok, req.clone()).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "tool_choice", "{e}");
        req.tool_choice = ToolChoice::Required;
        req.tools[0].parameters =
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}});
        let e = run(&tok, req.clone()).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "tools");
        assert!(e.to_string().contains("`/properties/a/pattern`"), "{e}");
        req.tools = vec![weather(), weather()];
        assert!(run(&tok, req)
            .unwrap_err()
            .to_string()
            .contains("two functions"));
        let mut req = request(vec![user("x")]);
        req.format = OutputFormat::JsonSchema(json!({"type": "string", "format": "email"}));
        let e = run(&tok, req).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "response_format");
        assert!(e.to_string().contains("`email`"), "{e}");
    }

    #[test]
    fn reasoning_options_need_the_card() {
        let tok = Bytes(Some(CHATML));
        let mut req = request(vec![user("x")]);
        req.thinking.enable = Some((true, "enable_thinking"));
        let e = run(&tok, req).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "enable_thinking");
        assert!(e.to_string().contains("card `local/m`"), "{e}");
        assert!(e.to_string().contains("reasoning.supportsToggle"), "{e}");
        let mut req = request(vec![user("x")]);
        req.thinking.effort = Some((ReasoningEffort::High, "reasoning_effort"));
        let e = run(&tok, req).unwrap_err();
        assert!(e.to_string().contains("reasoning.defaultEffort"), "{e}");
    }

    #[test]
    fn history_with_calls_becomes_text_for_a_template_without_tools() {
        let tok = Bytes(Some(CHATML));
        let mut call = Message::new(Role::Assistant, "");
        call.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        });
        let mut result = Message::new(Role::Tool, "18C");
        result.tool_call_id = Some("call_1".into());
        let (text, p) = run(&tok, request(vec![user("Weather?"), call, result])).unwrap();
        assert!(text.contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>"), "{text}");
        assert!(
            text.contains("<|im_start|>user\n<tool_response>\n18C\n</tool_response><|im_end|>"),
            "{text}"
        );
        // No tools offered: plain text out.
        assert_eq!(p.parser, ParserSpec::Plain);
        assert!(p.generation.params.grammar.is_none());
    }

    #[test]
    fn structured_output_is_a_grammar_and_a_trailing_assistant_turn_is_continued() {
        let tok = Bytes(Some(CHATML));
        let mut req = request(vec![user("x"), Message::new(Role::Assistant, "Sure: ")]);
        req.format = OutputFormat::JsonObject;
        let (text, p) = run(&tok, req).unwrap();
        assert!(text.ends_with("<|im_start|>assistant\nSure: "), "{text}");
        let g = p.generation.params.grammar.unwrap();
        assert!(g.gbnf.starts_with("root ::= object\n"), "{}", g.gbnf);
    }

    #[test]
    fn without_a_template_the_builtin_renders() {
        let tok = Bytes(None);
        let (text, _) = run(
            &tok,
            request(vec![Message::new(Role::System, "s"), user("u")]),
        )
        .unwrap();
        assert_eq!(text, "system: s\nuser: u\n");
    }
}
