//! The model's own chat template (`tokenizer.chat_template`, Jinja) rendered
//! with minijinja, the way Hugging Face transformers renders it: blocks trim
//! their newline and leading whitespace, Python string and dict methods work
//! (`.strip()`, `.startswith()`, `.items()`), `tojson` writes Python's
//! `json.dumps` spacing without HTML escapes, and `raise_exception` and
//! `strftime_now` exist.
//!
//! Invariant: a template that compiles renders the same text for the same
//! messages on every call (`strftime_now` aside, which reads the clock).

use std::fmt::Write as _;

use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::output::civil_from_days;

const NAME: &str = "chat";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatTemplate")
    }
}

/// Why a template could not render a conversation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template refused the conversation (`raise_exception`), e.g.
    /// roles that do not alternate: the client's to fix.
    #[error("the model's chat template refused the conversation: {0}")]
    Refused(String),
    /// Anything else (an error inside the template).
    #[error("the model's chat template failed: {0}")]
    Failed(String),
}

/// Why a chat template does not compile: minijinja's message, with line
/// numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(String);

impl ChatTemplate {
    /// Compiles `source`.
    pub fn new(source: &str) -> Result<ChatTemplate, CompileError> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| CompileError(describe(&e)))?;
        Ok(ChatTemplate { env })
    }

    /// Renders with `vars` as the template's variables (`messages`,
    /// `tools`, `add_generation_prompt`, `bos_token`, ...).
    pub fn render(&self, vars: &impl Serialize) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(NAME)
            .map_err(|e| RenderError::Failed(describe(&e)))?;
        t.render(Value::from(minijinja::value::Serde(vars)))
            .map_err(|e| {
                if e.kind() == ErrorKind::InvalidOperation {
                    if let Some(msg) = e.detail().and_then(|d| d.strip_prefix(RAISED)) {
                        return RenderError::Refused(msg.to_string());
                    }
                }
                RenderError::Failed(describe(&e))
            })
    }
}

/// Marks errors raised by the template itself.
const RAISED: &str = "raised: ";

/// An error with its place in the template and its causes.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{msg}"),
    ))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`:
/// `", "` and `": "` between items when not indented.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    // Accepted for compatibility; the output is never ASCII-escaped.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut json = serde_json::to_value(&value).map_err(|e| {
        Error::new(
            ErrorKind::BadSerialization,
            "cannot write the value as JSON",
        )
        .with_source(e)
    })?;
    if sort_keys == Some(true) {
        json.sort_all_objects();
    }
    Ok(Value::from_safe_string(python_json(&json, indent)))
}

/// JSON text as Python's `json.dumps` writes it.
pub fn python_json(v: &serde_json::Value, indent: Option<usize>) -> String {
    let mut out = Vec::new();
    match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(&pad),
            );
            v.serialize(&mut ser).expect("JSON values serialize");
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
            v.serialize(&mut ser).expect("JSON values serialize");
        }
    }
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// `", "` between items and `": "` after keys.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Today's date and time (UTC) in a `strftime` format; the directives
/// templates use (`%d %b %Y`, ...) are supported, others are kept as typed.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `strftime` of the UTC time `secs` after the Unix epoch.
pub fn strftime(format: &str, secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = ((days % 7 + 7 + 3) % 7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => write!(out, "{y}"),
            Some('y') => write!(out, "{:02}", y.rem_euclid(100)),
            Some('m') => write!(out, "{m:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('e') => write!(out, "{d:>2}"),
            Some('B') => write!(out, "{}", MONTHS[m as usize - 1]),
            Some('b') | Some('h') => write!(out, "{}", &MONTHS[m as usize - 1][..3]),
            Some('A') => write!(out, "{}", DAYS[weekday]),
            Some('a') => write!(out, "{}", &DAYS[weekday][..3]),
            Some('H') => write!(out, "{:02}", rem / 3600),
            Some('M') => write!(out, "{:02}", rem / 60 % 60),
            Some('S') => write!(out, "{:02}", rem % 60),
            Some('j') => write!(out, "{yday:03}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        }
        .expect("writing to a String");
    }
    out
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Qwen-style template: tools in the system turn, tool calls rendered
    /// with `tojson`, tool results wrapped, Python string methods, a
    /// namespace, reversed iteration and `raise_exception`.
    const QWEN_LIKE: &str = r##"{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- "# Tools\n<tools>" }}
{%- for tool in tools %}
{{- "\n" }}{{- tool | tojson }}
{%- endfor %}
{{- "\n</tools><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(last_user=-1) %}
{%- for message in messages[::-1] %}
{%- if ns.last_user < 0 and message.role == "user" %}{% set ns.last_user = (messages|length - 1) - loop.index0 %}{% endif %}
{%- endfor %}
{%- for message in messages %}
{%- if message.role == "user" or (message.role == "system" and not loop.first) %}
{{- '<|im_start|>' + message.role + '\n' + message.content.strip() + '<|im_end|>\n' }}
{%- elif message.role == "assistant" %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\n<tool_call>\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}{{- tool_call.arguments | tojson }}{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == "tool" %}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- elif message.role != "system" %}
{{- raise_exception('unknown role ' + message.role) }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"##;

    #[test]
    fn a_qwen_like_template_renders_tools_and_calls() {
        let t = ChatTemplate::new(QWEN_LIKE).unwrap();
        let out = t
            .render(&json!({
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": " Weather in Paris? "},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18"},
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now>", "parameters": {"type": "object"}}}],
                "add_generation_prompt": true,
            }))
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.\n\n# Tools\n<tools>\n\
             {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather <now>\", \"parameters\": {\"type\": \"object\"}}}\n\
             </tools><|im_end|>\n\
             <|im_start|>user\nWeather in Paris?<|im_end|>\n\
             <|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"°C\"}}\n</tool_call><|im_end|>\n\
             <|im_start|>user\n<tool_response>\n18\n</tool_response><|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_is_a_refusal_with_the_templates_message() {
        let t = ChatTemplate::new(QWEN_LIKE).unwrap();
        let e = t
            .render(&json!({"messages": [{"role": "wizard", "content": "x"}]}))
            .unwrap_err();
        assert_eq!(e, RenderError::Refused("unknown role wizard".into()));
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        let e = ChatTemplate::new("{% for m in messages %}{{ m.content }}").unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
    }

    #[test]
    fn tojson_indents_like_python() {
        let t = ChatTemplate::new("{{ x | tojson(indent=2) }}|{{ x | tojson }}").unwrap();
        let out = t.render(&json!({"x": {"b": [1, 2], "a": "é"}})).unwrap();
        assert_eq!(
            out,
            "{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": \"é\"\n}|{\"b\": [1, 2], \"a\": \"é\"}"
        );
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %e %H:%M:%S %j %y %%", t),
            "Thursday February 29 13:05:09 060 24 %"
        );
        assert_eq!(strftime("%d %B %Y", 0), "01 January 1970");
    }
}
