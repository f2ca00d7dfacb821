//! How rank 0 talks to its model: the prompt renderer, the tool-call dialect
//! and the reasoning markers, resolved once from the model card (its
//! `tooling`, `reasoning` and `runtime` sections), the card's `family`
//! defaults, and the GGUF's chat template.
//!
//! Precedence, per setting: the card's explicit value, then the family's
//! default, then what the chat template shows (a template that writes
//! `<|channel|>` speaks harmony, one that writes `<tool_call>` Hermes), then
//! skulk's generic dialect (Hermes blocks, described to the model in the
//! system prompt when its template knows no tools). A setting the card asks
//! for that skulk does not implement (`toolCallFormat: dsml`, ...) is never
//! replaced silently: requests that need it get a 400 naming the card.

use crate::card::{
    ModelCard, OutputParserType, PromptRendererType, ReasoningCardConfig, ReasoningEffort,
    ReasoningFormat, RuntimeCapabilityCardConfig, ToolCallFormat, ToolingCardConfig,
};
use crate::engine::Tokenizer;

use super::parse::{ParserSpec, ThinkSyntax, ToolSyntax};
use super::template::ChatTemplate;

/// The card's sections that shape chat (what rank 0 keeps of the card).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CardChat {
    pub model_id: String,
    pub family: String,
    pub quantization: String,
    /// Bytes of the weights (for Ollama's model list).
    pub storage_bytes: u64,
    pub reasoning: Option<ReasoningCardConfig>,
    pub tooling: Option<ToolingCardConfig>,
    pub runtime: Option<RuntimeCapabilityCardConfig>,
}

impl CardChat {
    pub fn from_card(card: &ModelCard) -> CardChat {
        CardChat {
            model_id: card.model_id.clone(),
            family: card.family.clone(),
            quantization: card.quantization.clone(),
            storage_bytes: card.storage_size.in_bytes,
            reasoning: card.reasoning.clone(),
            tooling: card.tooling.clone(),
            runtime: card.runtime.clone(),
        }
    }
}

/// How tool calls are written, in and out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolDialect {
    Hermes,
    Llama3,
    Mistral,
    /// gpt-oss harmony channels.
    Harmony,
}

impl ToolDialect {
    pub fn name(self) -> &'static str {
        match self {
            ToolDialect::Hermes => "hermes",
            ToolDialect::Llama3 => "llama3",
            ToolDialect::Mistral => "mistral",
            ToolDialect::Harmony => "harmony",
        }
    }
}

/// How reasoning text is marked in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningMarkers {
    None,
    /// Between an opening and a closing marker.
    Delimited(&'static str, &'static str),
    /// The harmony `analysis` channel.
    Channel,
}

/// What the model accepts about reasoning.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasoningProfile {
    pub markers: ReasoningMarkers,
    /// `enable_thinking` is honoured.
    pub toggle: bool,
    /// `reasoning_effort` is honoured.
    pub effort: bool,
    pub default_effort: Option<ReasoningEffort>,
    /// The effort that turns reasoning off.
    pub disabled_effort: Option<ReasoningEffort>,
}

/// How prompts are written.
#[derive(Debug)]
pub enum Renderer {
    /// The GGUF's Jinja template, rendered by skulk.
    Jinja {
        /// Boxed: a compiled template is large next to the other variant.
        template: Box<ChatTemplate>,
        /// It writes the `tools` it is given.
        tools: bool,
        /// It writes assistant turns' `tool_calls`.
        tool_calls: bool,
        /// It wants a call's `arguments` as JSON text, not as an object
        /// (templates that concatenate them into the prompt).
        string_args: bool,
        /// The source, for dialect detection.
        source: String,
    },
    /// llama.cpp's built-in template matcher (plain role/content turns).
    Builtin,
}

/// Everything resolved: one per rank 0, built when the tokenizer is loaded.
#[derive(Debug)]
pub struct Profile {
    pub card: CardChat,
    pub renderer: Renderer,
    /// The tool dialect, or why tool calls are refused (names the card).
    pub tools: Result<ToolDialect, ToolsRefused>,
    pub reasoning: ReasoningProfile,
    pub bos: Option<String>,
    pub eos: Option<String>,
    /// Fallbacks taken, said once in the rank's log.
    pub notes: Vec<String>,
}

/// Names that would show in a rendered prompt when the template writes
/// tools and tool calls.
const PROBE_TOOL: &str = "skulk_probe_tool_7f3a";
const PROBE_CALL: &str = "skulk_probe_call_7f3a";
const PROBE_ARG: &str = "skulk_probe_arg_7f3a";

impl Profile {
    pub fn resolve(card: CardChat, tok: &dyn Tokenizer) -> Profile {
        let mut notes = Vec::new();
        let (bos, eos) = tok.bos_eos_text();
        let id = card.model_id.clone();
        let runtime = card.runtime.clone().unwrap_or_default();
        if let Some(r) = runtime.prompt_renderer {
            if r != PromptRendererType::Tokenizer {
                notes.push(format!(
                    "the card `{id}` asks for the `{}` prompt renderer, which skulk does not implement; \
                     prompts are rendered with the GGUF's chat template",
                    enum_name(&r)
                ));
            }
        }
        let renderer = match tok.chat_template() {
            None => {
                notes.push(
                    "the GGUF carries no chat template: prompts use llama.cpp's built-in template for \
                     the architecture (no tool definitions in the template)"
                        .into(),
                );
                Renderer::Builtin
            }
            Some(source) => match ChatTemplate::new(&source) {
                Ok(template) => {
                    let (mut tools, tool_calls, string_args) =
                        probe(&template, bos.as_deref(), eos.as_deref());
                    if tools && detect_dialect(&source).is_none() {
                        notes.push(
                            "the chat template writes tools, but in a call format skulk does not \
                             parse; tools are described to the model in skulk's generic (Hermes) \
                             convention instead"
                                .into(),
                        );
                        tools = false;
                    }
                    Renderer::Jinja {
                        template: Box::new(template),
                        tools,
                        tool_calls,
                        string_args,
                        source,
                    }
                }
                Err(e) => {
                    notes.push(format!(
                        "the GGUF's chat template does not compile ({e}); prompts use llama.cpp's \
                         built-in template matcher instead"
                    ));
                    Renderer::Builtin
                }
            },
        };
        let source = match &renderer {
            Renderer::Jinja { source, .. } => source.as_str(),
            Renderer::Builtin => "",
        };
        let tools = tool_dialect(&card, source);
        let reasoning = reasoning_profile(&card, source);
        Profile {
            card,
            renderer,
            tools,
            reasoning,
            bos,
            eos,
            notes,
        }
    }

    /// The output parser for an answer: reasoning markers when the model
    /// reasons (`think_open`: the prompt ends inside a reasoning block), tool
    /// syntax when tools were offered.
    pub fn parser(&self, tools: Option<ToolDialect>, think_open: bool) -> ParserSpec {
        if tools == Some(ToolDialect::Harmony)
            || self.reasoning.markers == ReasoningMarkers::Channel
        {
            return ParserSpec::Harmony {
                tools: tools.is_some(),
            };
        }
        let think = match self.reasoning.markers {
            ReasoningMarkers::Delimited(open, close) => Some(ThinkSyntax {
                open,
                close,
                starts_inside: think_open,
            }),
            _ => None,
        };
        let tools = tools.map(|t| match t {
            ToolDialect::Hermes | ToolDialect::Harmony => ToolSyntax::Hermes,
            ToolDialect::Llama3 => ToolSyntax::Llama3,
            ToolDialect::Mistral => ToolSyntax::Mistral,
        });
        if think.is_none() && tools.is_none() {
            ParserSpec::Plain
        } else {
            ParserSpec::Marked { think, tools }
        }
    }
}

/// Whether the template writes the tools and the calls it is given, and
/// whether it wants a call's arguments as text (renders with made-up
/// names, looked for in the output).
fn probe(t: &ChatTemplate, bos: Option<&str>, eos: Option<&str>) -> (bool, bool, bool) {
    let tool = serde_json::json!({"type": "function", "function": {
        "name": PROBE_TOOL, "description": "probe", "parameters": {"type": "object", "properties": {}}}});
    let render = |messages: serde_json::Value| {
        t.render(&serde_json::json!({
            "messages": messages,
            "tools": [tool],
            "add_generation_prompt": true,
            "bos_token": bos.unwrap_or(""),
            "eos_token": eos.unwrap_or(""),
        }))
        .unwrap_or_default()
    };
    let tools = render(serde_json::json!([{"role": "user", "content": "hi"}])).contains(PROBE_TOOL);
    let with_args = |args: serde_json::Value| {
        let out = render(serde_json::json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_probe_7f3a", "type": "function",
                "function": {"name": PROBE_CALL, "arguments": args}}]},
            {"role": "tool", "tool_call_id": "call_probe_7f3a", "content": "ok"},
        ]));
        out.contains(PROBE_CALL) && out.contains(PROBE_ARG)
    };
    if with_args(serde_json::json!({PROBE_ARG: 1})) {
        (tools, true, false)
    } else if with_args(serde_json::json!(format!("{{\"{PROBE_ARG}\": 1}}"))) {
        (tools, true, true)
    } else {
        (tools, false, false)
    }
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn family_is(card: &CardChat, names: &[&str]) -> bool {
    let f = card.family.to_ascii_lowercase().replace('_', "-");
    names
        .iter()
        .any(|n| f == *n || f.starts_with(&format!("{n}-")))
}

/// Why a model takes no tool calls; each names the card that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolsRefused {
    #[error("the model's card `{card}` says `tooling.supportsToolCalling: false`")]
    CardSaysNo { card: String },
    #[error("the model's card `{card}` sets `{field}: {value}`, which skulk does not implement (supported: {supported})")]
    Unimplemented {
        card: String,
        field: &'static str,
        value: String,
        supported: &'static str,
    },
}

fn tool_dialect(card: &CardChat, source: &str) -> Result<ToolDialect, ToolsRefused> {
    let unimplemented = |field, value: String, supported| ToolsRefused::Unimplemented {
        card: card.model_id.clone(),
        field,
        value,
        supported,
    };
    const PARSERS: &str = "`generic`, `gpt_oss`";
    let tooling = card.tooling.clone().unwrap_or_default();
    if tooling.supports_tool_calling == Some(false) {
        return Err(ToolsRefused::CardSaysNo {
            card: card.model_id.clone(),
        });
    }
    match tooling.tool_call_format {
        Some(ToolCallFormat::GptOss) => return Ok(ToolDialect::Harmony),
        Some(f @ (ToolCallFormat::Gemma4 | ToolCallFormat::Dsml)) => {
            return Err(unimplemented(
                "tooling.toolCallFormat",
                enum_name(&f),
                PARSERS,
            ))
        }
        Some(ToolCallFormat::Generic) | None => {}
    }
    match card.runtime.as_ref().and_then(|r| r.output_parser) {
        Some(OutputParserType::GptOss) => return Ok(ToolDialect::Harmony),
        Some(p @ (OutputParserType::Gemma4 | OutputParserType::DeepseekV32)) => {
            return Err(unimplemented(
                "runtime.outputParser",
                enum_name(&p),
                PARSERS,
            ))
        }
        Some(OutputParserType::Generic) | None => {}
    }
    if let Some(p) = card.runtime.as_ref().and_then(|r| r.prompt_renderer) {
        if p != PromptRendererType::Tokenizer {
            return Err(unimplemented(
                "runtime.promptRenderer",
                enum_name(&p),
                "`tokenizer`",
            ));
        }
    }
    if family_is(card, &["gpt-oss", "gptoss"]) {
        return Ok(ToolDialect::Harmony);
    }
    // A template without a known call format gets skulk's Hermes prompt.
    Ok(detect_dialect(source).unwrap_or(ToolDialect::Hermes))
}

/// The call format a chat template shows, if it shows one skulk parses.
pub fn detect_dialect(source: &str) -> Option<ToolDialect> {
    if source.contains("<|channel|>") {
        Some(ToolDialect::Harmony)
    } else if source.contains("[TOOL_CALLS]") {
        Some(ToolDialect::Mistral)
    } else if source.contains("<|python_tag|>")
        || (source.contains("ipython") && source.contains("\"parameters\""))
    {
        Some(ToolDialect::Llama3)
    } else if source.contains("<tool_call>") {
        Some(ToolDialect::Hermes)
    } else {
        None
    }
}

fn reasoning_profile(card: &CardChat, source: &str) -> ReasoningProfile {
    let r = card.reasoning.clone().unwrap_or_default();
    let gpt_oss = family_is(card, &["gpt-oss", "gptoss"]);
    let bracket = source.contains("[THINK]");
    let delimited = if bracket {
        ReasoningMarkers::Delimited(ThinkSyntax::BRACKETS.0, ThinkSyntax::BRACKETS.1)
    } else {
        ReasoningMarkers::Delimited(ThinkSyntax::THINK.0, ThinkSyntax::THINK.1)
    };
    let markers = match r.format {
        Some(ReasoningFormat::None) => ReasoningMarkers::None,
        Some(ReasoningFormat::TokenDelimited) => delimited,
        Some(ReasoningFormat::ChannelDelimited) => ReasoningMarkers::Channel,
        None if gpt_oss || source.contains("<|channel|>") => ReasoningMarkers::Channel,
        None if family_is(card, &["qwen3", "deepseek"])
            || source.contains("<think>")
            || bracket =>
        {
            delimited
        }
        None => ReasoningMarkers::None,
    };
    let default_effort = r.default_effort.or(if gpt_oss && card.reasoning.is_none() {
        Some(ReasoningEffort::Medium)
    } else {
        None
    });
    ReasoningProfile {
        markers,
        toggle: r
            .supports_toggle
            .unwrap_or(card.reasoning.is_none() && source.contains("enable_thinking")),
        effort: r.supports_budget == Some(true) || default_effort.is_some(),
        default_effort,
        disabled_effort: r.disabled_effort,
    }
}

/// Text of a reasoning effort, as templates and clients spell it.
pub fn effort_name(e: ReasoningEffort) -> String {
    enum_name(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(family: &str) -> CardChat {
        CardChat {
            model_id: "org/m".into(),
            family: family.into(),
            ..CardChat::default()
        }
    }

    #[test]
    fn the_card_wins_then_the_family_then_the_template() {
        let mut c = card("llama");
        assert_eq!(
            tool_dialect(&c, "{{ '<|python_tag|>' }}"),
            Ok(ToolDialect::Llama3)
        );
        assert_eq!(tool_dialect(&c, "plain"), Ok(ToolDialect::Hermes));
        c.tooling = Some(ToolingCardConfig {
            tool_call_format: Some(ToolCallFormat::GptOss),
            ..Default::default()
        });
        assert_eq!(
            tool_dialect(&c, "{{ '<|python_tag|>' }}"),
            Ok(ToolDialect::Harmony)
        );
        assert_eq!(tool_dialect(&card("gpt-oss"), ""), Ok(ToolDialect::Harmony));
        c.tooling = Some(ToolingCardConfig {
            tool_call_format: Some(ToolCallFormat::Dsml),
            ..Default::default()
        });
        let e = tool_dialect(&c, "").unwrap_err().to_string();
        assert!(
            e.contains("`org/m`") && e.contains("`tooling.toolCallFormat: dsml`"),
            "{e}"
        );
        c.tooling = Some(ToolingCardConfig {
            supports_tool_calling: Some(false),
            ..Default::default()
        });
        assert!(tool_dialect(&c, "")
            .unwrap_err()
            .to_string()
            .contains("supportsToolCalling: false"));
    }

    /// Renders tools and concatenates call arguments as text (as DeepSeek's
    /// templates do), in a format of its own (`<TOOLCALL>`).
    const STRING_ARGS: &str = "{% for t in tools %}{{ t.function.name }}{% endfor %}\
        {% for m in messages %}{% if m.tool_calls %}<TOOLCALL>{{ m.tool_calls[0].function.name + ' ' + m.tool_calls[0].function.arguments }}</TOOLCALL>\
        {% else %}{{ m.role + ': ' + m.content }}{% endif %}{% endfor %}";

    struct Tpl(&'static str);
    impl Tokenizer for Tpl {
        fn apply_chat_template(
            &self,
            _: &[crate::engine::ChatMessage],
            _: bool,
        ) -> Result<String, crate::engine::EngineError> {
            Ok(String::new())
        }
        fn tokenize(&self, t: &str, _: bool) -> Result<Vec<i32>, crate::engine::EngineError> {
            Ok(t.bytes().map(i32::from).collect())
        }
        fn token_to_piece(&self, t: i32) -> Vec<u8> {
            vec![t as u8]
        }
        fn is_eog(&self, _: i32) -> bool {
            false
        }
        fn chat_template(&self) -> Option<String> {
            Some(self.0.to_string())
        }
    }

    #[test]
    fn the_probe_finds_what_a_template_writes() {
        let p = Profile::resolve(card("x"), &Tpl(STRING_ARGS));
        match &p.renderer {
            Renderer::Jinja {
                tools,
                tool_calls,
                string_args,
                ..
            } => {
                // It writes tools, but in a format skulk does not parse: the
                // generic prompt is used instead.
                assert!(!tools);
                assert!(*tool_calls && *string_args);
            }
            Renderer::Builtin => panic!("the template compiles"),
        }
        assert!(
            p.notes[0].contains("call format skulk does not parse"),
            "{:?}",
            p.notes
        );
        let p = Profile::resolve(
            card("x"),
            &Tpl("{% for m in messages %}{{ m.content }}{% endfor %}"),
        );
        assert!(matches!(
            p.renderer,
            Renderer::Jinja {
                tools: false,
                tool_calls: false,
                ..
            }
        ));
        let p = Profile::resolve(card("x"), &Tpl("{% for m in messages %}"));
        assert!(matches!(p.renderer, Renderer::Builtin));
        assert!(p.notes[0].contains("does not compile"), "{:?}", p.notes);
    }

    #[test]
    fn reasoning_follows_card_family_and_template() {
        let r = reasoning_profile(&card("llama"), "plain");
        assert_eq!(r.markers, ReasoningMarkers::None);
        assert!(!r.toggle && !r.effort);
        let r = reasoning_profile(&card("qwen"), "{% if enable_thinking %}<think>{% endif %}");
        assert_eq!(
            r.markers,
            ReasoningMarkers::Delimited("<think>", "</think>")
        );
        assert!(r.toggle);
        let r = reasoning_profile(&card("gpt-oss"), "");
        assert_eq!(r.markers, ReasoningMarkers::Channel);
        assert!(r.effort && !r.toggle);
        let mut c = card("deepseek");
        c.reasoning = Some(ReasoningCardConfig {
            supports_toggle: Some(false),
            format: Some(ReasoningFormat::None),
            ..Default::default()
        });
        let r = reasoning_profile(&c, "<think>");
        assert_eq!(r.markers, ReasoningMarkers::None);
        assert!(!r.toggle);
    }
}
