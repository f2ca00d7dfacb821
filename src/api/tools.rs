//! Tool calls written the model's way: the prompt that describes tools to a
//! model whose template does not, earlier calls and results as text, and the
//! grammars that force a call (`tool_choice` `required` or a named
//! function) or keep a call the model starts valid (`auto`, lazily).
//!
//! Invariant: a forced call's grammar admits exactly the dialect's call
//! syntax around arguments that validate against the function's
//! `parameters` schema, so the parser (`parse.rs`) reads back a call whose
//! arguments validate.

use serde_json::{json, Value};

use super::profile::ToolDialect;
use super::schema::{literal, Grammar, SchemaCompiler, SchemaError};
use super::template::python_json;

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema of the arguments (an object schema).
    pub parameters: Value,
}

impl Tool {
    /// The OpenAI shape templates expect (`{"type": "function", "function":
    /// {...}}`).
    pub fn openai_json(&self) -> Value {
        let mut f = json!({"name": self.name});
        if let Some(d) = &self.description {
            f["description"] = json!(d);
        }
        f["parameters"] = self.parameters.clone();
        json!({"type": "function", "function": f})
    }
}

/// A call the model made (in a request's history or in an answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments' JSON text.
    pub arguments: String,
}

/// At most this many calls in one forced answer when parallel calls are
/// allowed: a small model that repeats itself cannot fill its budget with
/// calls.
pub const MAX_PARALLEL_CALLS: u64 = 8;

/// The system-prompt text that describes `tools` to a model whose template
/// does not, in the Hermes convention the parser reads back.
pub fn hermes_prompt(tools: &[Tool], must_call: Option<&str>) -> String {
    let mut s = String::from(
        "# Tools\n\nYou can call functions to help with the user's request. They are described \
         below as JSON, inside <tools></tools>:\n<tools>",
    );
    for t in tools {
        s.push('\n');
        s.push_str(&python_json(&t.openai_json(), None));
    }
    s.push_str(
        "\n</tools>\n\nTo call a function, write its name and its arguments as a JSON object inside \
         <tool_call></tool_call> tags, one block per call:\n<tool_call>\n{\"name\": \
         \"<function name>\", \"arguments\": <arguments as a JSON object>}\n</tool_call>",
    );
    if let Some(name) = must_call {
        s.push_str(&format!("\n\nCall `{name}` now."));
    }
    s
}

/// An earlier call written as the model writes it in `dialect`, for
/// templates that do not write `tool_calls` themselves.
pub fn call_text(call: &ToolCall) -> String {
    let args: Value = serde_json::from_str(&call.arguments)
        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
    format!(
        "<tool_call>\n{}\n</tool_call>",
        python_json(&json!({"name": call.name, "arguments": args}), None)
    )
}

/// A tool result as text for templates without a `tool` role.
pub fn result_text(content: &str) -> String {
    format!("<tool_response>\n{content}\n</tool_response>")
}

/// What a forced or lazy call grammar needs to know.
#[derive(Debug, Clone, Copy)]
pub struct CallGrammar<'a> {
    pub dialect: ToolDialect,
    /// Mistral's `name[ARGS]{...}` form (templates that write `[ARGS]`).
    pub mistral_args: bool,
    pub tools: &'a [Tool],
    pub parallel: bool,
}

/// A schema problem in one tool's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSchemaError {
    pub tool: usize,
    pub error: SchemaError,
}

impl CallGrammar<'_> {
    /// Adds the rule `calls` (one call, or up to [`MAX_PARALLEL_CALLS`])
    /// and returns its name.
    pub fn add(&self, g: &mut Grammar) -> Result<String, ToolSchemaError> {
        g.primitive("space");
        let mut alts = Vec::new();
        for (i, t) in self.tools.iter().enumerate() {
            let mut c = SchemaCompiler::new(&t.parameters);
            let args = c
                .value(g, &t.parameters, "", &format!("{}-args", t.name))
                .map_err(|error| ToolSchemaError { tool: i, error })?;
            let name = literal(&t.name);
            let json_name = literal(&Value::String(t.name.clone()).to_string());
            let body = match self.dialect {
                ToolDialect::Hermes => format!(
                    "\"<tool_call>\\n{{\\\"name\\\": \" {json_name} \", \\\"arguments\\\": \" {args} \"}}\\n</tool_call>\""
                ),
                ToolDialect::Llama3 => format!(
                    "\"{{\\\"name\\\": \" {json_name} \", \\\"parameters\\\": \" {args} \"}}\""
                ),
                ToolDialect::Mistral if self.mistral_args => {
                    format!("\"[TOOL_CALLS]\" {name} \"[ARGS]\" {args}")
                }
                ToolDialect::Mistral => format!(
                    "\"{{\\\"name\\\": \" {json_name} \", \\\"arguments\\\": \" {args} \"}}\""
                ),
                ToolDialect::Harmony => format!(
                    "\"<|channel|>commentary to=functions.\" {name} \" <|constrain|>json<|message|>\" {args}"
                ),
            };
            alts.push(g.rule(&format!("call-{}", t.name), body));
        }
        let call = g.rule("call", alts.join(" | "));
        let parallel = self.parallel && self.dialect != ToolDialect::Harmony;
        let rep = |sep: &str| {
            if parallel {
                format!("{call} ({sep} {call}){{0,{}}}", MAX_PARALLEL_CALLS - 1)
            } else {
                call.clone()
            }
        };
        let body = match self.dialect {
            ToolDialect::Hermes => rep("\"\\n\""),
            ToolDialect::Llama3 => rep("\"; \""),
            ToolDialect::Mistral if self.mistral_args && parallel => {
                format!("{call}{{1,{MAX_PARALLEL_CALLS}}}")
            }
            ToolDialect::Mistral if self.mistral_args => call.clone(),
            ToolDialect::Mistral => format!("\"[TOOL_CALLS][\" {} \"]\"", rep("\", \"")),
            // A harmony answer may reason first; its call ends the answer.
            ToolDialect::Harmony => format!(
                "(\"<|channel|>analysis<|message|>\" [^<]* \"<|end|><|start|>assistant\")? {call}"
            ),
        };
        Ok(g.rule("calls", body))
    }

    /// Regular expressions that start a lazy call grammar when the model
    /// begins a call on its own (`tool_choice: auto`); none for harmony,
    /// whose call headers vary.
    pub fn triggers(&self) -> Vec<String> {
        match self.dialect {
            ToolDialect::Hermes => vec![r"[\s\S]*?(<tool_call>)[\s\S]*".into()],
            ToolDialect::Mistral => vec![r"[\s\S]*?(\[TOOL_CALLS\])[\s\S]*".into()],
            ToolDialect::Llama3 => vec![r#"^\s*(\{"name")[\s\S]*$"#.into()],
            ToolDialect::Harmony => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        vec![Tool {
            name: "get_weather".into(),
            description: Some("Weather now".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }]
    }

    #[test]
    fn hermes_forced_call_grammar() {
        let t = tools();
        let mut g = Grammar::new();
        let calls = CallGrammar {
            dialect: ToolDialect::Hermes,
            mistral_args: false,
            tools: &t,
            parallel: false,
        }
        .add(&mut g)
        .unwrap();
        g.set("root", calls);
        let text = g.render();
        assert!(text.contains(r#"call-get-weather ::= "<tool_call>\n{\"name\": " "\"get_weather\"" ", \"arguments\": " get-weather-args "}\n</tool_call>""#), "{text}");
        assert!(text.contains("calls ::= call\n"), "{text}");
    }

    #[test]
    fn a_tool_schema_error_names_the_tool() {
        let t = vec![Tool {
            name: "f".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "a+"}}}),
        }];
        let e = CallGrammar {
            dialect: ToolDialect::Hermes,
            mistral_args: false,
            tools: &t,
            parallel: true,
        }
        .add(&mut Grammar::new())
        .unwrap_err();
        assert_eq!(e.tool, 0);
        assert_eq!(e.error.pointer, "/properties/x/pattern");
    }

    #[test]
    fn the_prompt_lists_tools_as_json() {
        let p = hermes_prompt(&tools(), Some("get_weather"));
        assert!(p.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather now\", \"parameters\": {\"type\": \"object\""), "{p}");
        assert!(p.ends_with("Call `get_weather` now."));
        let c = call_text(&ToolCall {
            id: "x".into(),
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        });
        assert_eq!(
            c,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>"
        );
    }
}
