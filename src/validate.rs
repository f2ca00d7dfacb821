//! `skulk validate`: checks card and inventory files and reports every
//! problem with its file, line, column and JSON pointer.
//!
//! Each file goes through one pipeline: load (bounded parse, see
//! [`crate::load`]) -> recognise the document kind -> normalise keys ->
//! JSON-schema validation collecting all errors -> only when the schema
//! passes, the typed parse and the semantic rules the schema cannot express.
//! Then rules across files: two cards with the same `modelId` under one
//! validated directory are an error, a file name that is not the normalised
//! `modelId` a warning. Positions are looked up only for files that have
//! problems. Document kinds are the [`DocKind`]s, each with its rules (a
//! [`DocumentKind`]) in [`KINDS`]; adding one is a variant and its rules.
//! Keys are normalised by one walker (`rename_keys`), with each kind's
//! renaming (a card's snake_case keys become camelCase).
//!
//! Invariant: any input bytes give a report, never a panic.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::card::{self, ModelCard, Severity};
use crate::load::{self, Format, LoadErrorKind, Location, SourceMap};
use crate::schema::{self, SchemaKind};

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// `file:line:col: /pointer: message` lines and a summary.
    Text,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands (`::error file=...::message`).
    Github,
}

/// What `skulk validate` was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Files, directories and glob patterns as given.
    pub paths: Vec<String>,
    pub format: ReportFormat,
    /// Warnings make the run fail.
    pub deny_warnings: bool,
}

/// How a run ended, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every file valid (warnings allowed unless denied): exit 0.
    Valid,
    /// At least one invalid file (or a warning, when denied): exit 1.
    Invalid,
    /// A file could not be read: exit 2.
    Unreadable,
}

/// A path argument that leads to no files: the run cannot start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("`{0}` does not exist")]
    Missing(String),
    #[error("`{pattern}` is not a valid glob pattern: {message}")]
    BadGlob { pattern: String, message: String },
    #[error("no files match `{0}`")]
    NoMatch(String),
    #[error("no `.yaml`, `.yml`, `.json` or `.toml` files under `{0}`")]
    EmptyDirectory(String),
    #[error("cannot read the directory `{path}`: {source}")]
    ReadDir {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// A file to check and the directory it was found under: cross-file rules
/// apply among the files of one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub root: PathBuf,
}

/// The kinds of document skulk reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    Inventory,
    Plan,
    Card,
}

impl DocKind {
    /// The name shown in reports (`card`, `inventory`, `plan`).
    pub fn name(self) -> &'static str {
        match self {
            DocKind::Inventory => "inventory",
            DocKind::Plan => "plan",
            DocKind::Card => "card",
        }
    }

    /// The kind in a sentence: `a model card`, `an inventory`, `a plan`.
    fn phrase(self) -> &'static str {
        match self {
            DocKind::Inventory => "an inventory",
            DocKind::Plan => "a plan",
            DocKind::Card => "a model card",
        }
    }

    /// How `skulk validate` checks documents of this kind.
    fn rules(self) -> &'static DocumentKind {
        match self {
            DocKind::Inventory => &INVENTORY,
            DocKind::Plan => &PLAN,
            DocKind::Card => &CARD,
        }
    }
}

/// A document kind `skulk validate` recognises.
pub struct DocumentKind {
    pub kind: DocKind,
    /// Whether a top-level object is a document of this kind. Kinds are
    /// tried in table order; the last one should accept anything.
    pub detect: fn(&Map<String, Value>) -> bool,
    /// Key rewriting applied before the schema sees the document (and to
    /// source keys when positions are looked up).
    pub rename_key: fn(&str) -> String,
    /// The generated schema the document must satisfy.
    pub schema: SchemaKind,
    /// The typed parse and the semantic rules, run on a schema-valid,
    /// normalised document.
    pub check: fn(&Value) -> Checked,
}

/// What a kind's `check` found.
#[derive(Debug, Default)]
pub struct Checked {
    pub problems: Vec<card::Problem>,
    /// For cards: the model id, which cross-file rules compare.
    pub model_id: Option<String>,
}

/// The document kinds, tried in order.
pub static KINDS: [&DocumentKind; 3] = [&INVENTORY, &PLAN, &CARD];

static INVENTORY: DocumentKind = DocumentKind {
    kind: DocKind::Inventory,
    detect: |object| object.contains_key("hosts"),
    rename_key: str::to_string,
    schema: SchemaKind::Inventory,
    check: check_inventory,
};

static PLAN: DocumentKind = DocumentKind {
    kind: DocKind::Plan,
    detect: |object| object.contains_key("instance"),
    rename_key: str::to_string,
    schema: SchemaKind::Plan,
    check: check_plan,
};

/// Cards: the Python Skulk's snake_case keys are read as the camelCase
/// wire names.
static CARD: DocumentKind = DocumentKind {
    kind: DocKind::Card,
    detect: |_| true,
    rename_key: card::snake_to_camel,
    schema: SchemaKind::Card,
    check: check_card,
};

/// The kind a document clearly is, when that is not `expected`:
/// `"a model card"`, `"an inventory"` or `"a plan"`. A
/// document is clearly an inventory when it has `hosts`, a plan when it has
/// `instance` and `skulk`, a card when it has `modelId` (or `model_id`) and
/// is neither; anything else is left to the schema.
pub fn other_kind(value: &Value, expected: DocKind) -> Option<&'static str> {
    let object = value.as_object()?;
    let kind = if object.contains_key("hosts") {
        DocKind::Inventory
    } else if object.contains_key("instance") && object.contains_key("skulk") {
        DocKind::Plan
    } else if object.contains_key("modelId") || object.contains_key("model_id") {
        DocKind::Card
    } else {
        return None;
    };
    (kind != expected).then_some(kind.phrase())
}

fn check_inventory(value: &Value) -> Checked {
    let problems = match crate::inventory::parse(value) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| card::Problem {
                pointer: e.pointer,
                message: e.message,
                severity: Severity::Error,
            })
            .collect(),
    };
    Checked {
        problems,
        model_id: None,
    }
}

fn check_plan(value: &Value) -> Checked {
    let problem = |pointer: String, message: String| card::Problem {
        pointer,
        message,
        severity: Severity::Error,
    };
    let problems = match crate::plan::PlanDocument::from_value(value) {
        Ok(_) => Vec::new(),
        Err(crate::plan::document::DocumentError::Malformed { pointer, message }) => {
            vec![problem(pointer, message)]
        }
        Err(other) => vec![problem(String::new(), other.to_string())],
    };
    Checked {
        problems,
        model_id: None,
    }
}

fn check_card(value: &Value) -> Checked {
    match serde_json::from_value::<ModelCard>(value.clone()) {
        Ok(card) => Checked {
            problems: card.semantic_problems_in(value),
            model_id: Some(card.model_id),
        },
        Err(err) => Checked {
            problems: vec![card::Problem {
                pointer: String::new(),
                message: err.to_string(),
                severity: Severity::Error,
            }],
            model_id: None,
        },
    }
}

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: DiagnosticSeverity,
    /// JSON pointer into the (normalised) document; empty for the whole
    /// file (syntax errors, unreadable files).
    pub pointer: String,
    #[serde(flatten)]
    pub location: Option<Location>,
    pub message: String,
    /// Report at the key rather than the value (unknown fields).
    #[serde(skip)]
    at_key: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiagnosticSeverity {
    Warning,
    Error,
}

impl Diagnostic {
    fn error(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: DiagnosticSeverity::Error,
            pointer: pointer.into(),
            location: None,
            message: message.into(),
            at_key: false,
        }
    }

    fn warning(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: DiagnosticSeverity::Warning,
            ..Self::error(pointer, message)
        }
    }

    fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    fn from_problem(problem: card::Problem) -> Self {
        let diagnostic = Self::error(problem.pointer, problem.message);
        match problem.severity {
            Severity::Error => diagnostic,
            Severity::Warning => Self {
                severity: DiagnosticSeverity::Warning,
                ..diagnostic
            },
        }
    }
}

/// A file's text, format and key renaming, kept until positions are looked up.
type KeptSource = (String, Format, fn(&str) -> String);

/// The result for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    /// The recognised document kind; absent when the file did not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub valid: bool,
    pub problems: Vec<Diagnostic>,
    #[serde(skip)]
    pub unreadable: bool,
    #[serde(skip)]
    model_id: Option<String>,
    #[serde(skip)]
    source: Option<KeptSource>,
    /// The checked document, keys normalised (only from
    /// [`validate_file_as`], and only without errors).
    #[serde(skip)]
    document: Option<Value>,
}

impl FileReport {
    fn new(path: &Path) -> Self {
        Self {
            path: path.display().to_string(),
            kind: None,
            valid: true,
            problems: Vec::new(),
            unreadable: false,
            model_id: None,
            source: None,
            document: None,
        }
    }

    /// The document [`validate_file_as`] checked, keys normalised (a card's
    /// snake_case keys in camelCase); `None` when it has errors.
    pub fn into_document(self) -> Option<Value> {
        self.document
    }

    pub fn errors(&self) -> usize {
        self.count(DiagnosticSeverity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(DiagnosticSeverity::Warning)
    }

    fn count(&self, severity: DiagnosticSeverity) -> usize {
        self.problems
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// Fills in missing positions from the source text (only for files with
    /// problems), then orders problems by position.
    fn finish(&mut self) {
        self.valid = self.errors() == 0;
        if let Some((text, format, rename)) = self.source.take() {
            if self.problems.iter().any(|d| d.location.is_none()) {
                let map = SourceMap::build(&text, format, &rename);
                for diagnostic in &mut self.problems {
                    if diagnostic.location.is_none() {
                        diagnostic.location = map.locate(&diagnostic.pointer, diagnostic.at_key);
                    }
                }
            }
        }
        self.problems.sort_by(|a, b| {
            a.location
                .cmp(&b.location)
                .then(b.severity.cmp(&a.severity))
        });
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: usize,
    pub valid: usize,
    pub invalid: usize,
    pub warnings: usize,
}

impl Report {
    pub fn summary(&self) -> Summary {
        let valid = self.files.iter().filter(|f| f.valid).count();
        Summary {
            files: self.files.len(),
            valid,
            invalid: self.files.len() - valid,
            warnings: self.files.iter().map(FileReport::warnings).sum(),
        }
    }

    pub fn outcome(&self, deny_warnings: bool) -> Outcome {
        let summary = self.summary();
        if self.files.iter().any(|f| f.unreadable) {
            Outcome::Unreadable
        } else if summary.invalid > 0 || (deny_warnings && summary.warnings > 0) {
            Outcome::Invalid
        } else {
            Outcome::Valid
        }
    }
}

/// Runs `skulk validate`: collects the files, checks them and writes the
/// report to `out`.
pub fn run(settings: &Settings, out: &mut dyn Write) -> Result<Outcome, RunError> {
    let targets = collect(&settings.paths)?;
    let report = validate_targets(&targets);
    render(&report, settings.format, out).map_err(RunError::Write)?;
    Ok(report.outcome(settings.deny_warnings))
}

/// Why `skulk validate` could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("cannot write the report: {0}")]
    Write(#[source] io::Error),
}

/// Expands path arguments into files: a file as is, a directory searched
/// recursively for `.yaml/.yml/.json/.toml` files (hidden entries skipped,
/// symlinked directories not followed), anything else as a glob pattern.
/// Files are returned in a stable order, each once.
pub fn collect(paths: &[String]) -> Result<Vec<Target>, CollectError> {
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |path: PathBuf, root: PathBuf, targets: &mut Vec<Target>| {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            targets.push(Target { path, root });
        }
    };
    for arg in paths {
        let path = Path::new(arg);
        if path.is_dir() {
            let files = walk(path)?;
            if files.is_empty() {
                return Err(CollectError::EmptyDirectory(arg.clone()));
            }
            for file in files {
                push(file, path.to_path_buf(), &mut targets);
            }
        } else if path.exists() {
            push(path.to_path_buf(), parent(path), &mut targets);
        } else if arg.contains(['*', '?', '[']) {
            let matches = glob::glob(arg).map_err(|e| CollectError::BadGlob {
                pattern: arg.clone(),
                message: e.msg.to_string(),
            })?;
            let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
            found.sort();
            let mut any = false;
            for entry in found {
                if entry.is_dir() {
                    for file in walk(&entry)? {
                        any = true;
                        push(file, entry.clone(), &mut targets);
                    }
                } else if Format::from_path(&entry).is_some() {
                    any = true;
                    let root = parent(&entry);
                    push(entry, root, &mut targets);
                }
            }
            if !any {
                return Err(CollectError::NoMatch(arg.clone()));
            }
        } else {
            return Err(CollectError::Missing(arg.clone()));
        }
    }
    Ok(targets)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>, CollectError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let read_error = |source| CollectError::ReadDir {
            path: dir.display().to_string(),
            source,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            entries.push(entry);
        }
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let file_type = entry.file_type().map_err(read_error)?;
            if file_type.is_dir() {
                subdirs.push(path);
            } else if Format::from_path(&path).is_some() && (file_type.is_file() || path.is_file())
            {
                files.push(path);
            }
        }
        pending.extend(subdirs.into_iter().rev());
    }
    files.sort();
    Ok(files)
}

/// Checks every target, then the rules across files.
pub fn validate_targets(targets: &[Target]) -> Report {
    let mut files: Vec<FileReport> = targets.iter().map(|t| validate_file(&t.path)).collect();
    cross_file_rules(targets, &mut files);
    for file in &mut files {
        file.finish();
    }
    Report { files }
}

fn cross_file_rules(targets: &[Target], files: &mut [FileReport]) {
    // modelId -> first file with it, per root.
    let mut first: BTreeMap<(&Path, String), usize> = BTreeMap::new();
    for (index, target) in targets.iter().enumerate() {
        let Some(model_id) = files[index].model_id.clone() else {
            continue;
        };
        let expected = card::normalize_model_id(&model_id);
        let stem = target
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string());
        if stem.as_deref() != Some(expected.as_str()) {
            let extension = target
                .path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            let name = target
                .path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            files[index].problems.push(Diagnostic::warning(
                "/modelId",
                format!(
                    "the file name `{name}` does not match the model id `{model_id}`; expected `{expected}{extension}`"
                ),
            ));
        }
        match first.get(&(target.root.as_path(), model_id.clone())) {
            Some(&earlier) => {
                let other = files[earlier].path.clone();
                files[index].problems.push(Diagnostic::error(
                    "/modelId",
                    format!("the model id `{model_id}` is also used by `{other}`"),
                ));
            }
            None => {
                first.insert((target.root.as_path(), model_id), index);
            }
        }
    }
}

/// Checks one file on its own (no cross-file rules).
pub fn validate_file(path: &Path) -> FileReport {
    let mut report = FileReport::new(path);
    let source = match load::read_source(path) {
        Ok(source) => source,
        Err(err) => {
            report.unreadable = err.is_io();
            report
                .problems
                .push(Diagnostic::error("", err.kind.to_string()).at(err.location));
            report.valid = false;
            return report;
        }
    };
    check_text(&mut report, source.text, source.format);
    report
}

/// Checks one file as a document of `kind`, whatever its content looks
/// like, with positions filled in: for commands that take a file of a known
/// kind (`skulk plan --card`). A document without errors is kept, with its
/// keys normalised ([`FileReport::into_document`]), so the command reads
/// and parses the file once.
pub fn validate_file_as(path: &Path, kind: DocKind) -> FileReport {
    let mut report = FileReport::new(path);
    match load::read_source(path) {
        Ok(source) => check_text_as(&mut report, source.text, source.format, Some(kind.rules())),
        Err(err) => {
            report.unreadable = err.is_io();
            report
                .problems
                .push(Diagnostic::error("", err.kind.to_string()).at(err.location));
        }
    }
    report.finish();
    report
}

/// Checks a document given as text, as if read from `path` (pure: used by
/// the fuzz target and benchmarks too).
pub fn validate_text(path: &Path, text: &str, format: Format) -> FileReport {
    let mut report = FileReport::new(path);
    check_text(&mut report, text.to_string(), format);
    report.finish();
    report
}

fn check_text(report: &mut FileReport, text: String, format: Format) {
    check_text_as(report, text, format, None)
}

fn check_text_as(
    report: &mut FileReport,
    text: String,
    format: Format,
    forced: Option<&'static DocumentKind>,
) {
    let value = match load::parse(&text, format) {
        Ok(value) => value,
        Err(err) => {
            let kind = LoadErrorKind::Syntax {
                format: err.format,
                message: err.message,
            };
            report
                .problems
                .push(Diagnostic::error("", kind.to_string()).at(err.location));
            return;
        }
    };
    let Value::Object(object) = &value else {
        report.problems.push(
            Diagnostic::error(
                "",
                format!(
                    "expected a mapping of fields at the top level, found {}",
                    type_name(&value)
                ),
            )
            .at(Some(Location { line: 1, column: 1 })),
        );
        return;
    };
    if let Some(forced) = forced {
        if let Some(actual) = other_kind(&value, forced.kind) {
            report.problems.push(Diagnostic::error(
                "",
                format!(
                    "this is {actual}, not {}; were two file arguments swapped?",
                    forced.kind.phrase()
                ),
            ));
            return;
        }
    }
    let kind = forced.unwrap_or_else(|| {
        KINDS
            .iter()
            .find(|kind| (kind.detect)(object))
            .expect("the last document kind accepts anything")
    });
    report.kind = Some(kind.kind.name());
    report.source = Some((text, format, kind.rename_key));
    let value = match rename_keys(value, kind.rename_key) {
        Ok(value) => value,
        Err(diagnostic) => {
            report.problems.push(diagnostic);
            return;
        }
    };
    let Some(validator) = schema::validator(kind.schema) else {
        report.problems.push(Diagnostic::error(
            "",
            format!("{} files cannot be checked by this build", kind.kind.name()),
        ));
        return;
    };
    let schema_value = schema::schema(kind.schema);
    let before = report.problems.len();
    for error in validator.iter_errors(&value) {
        schema_diagnostics(&error, schema_value.as_ref(), &mut report.problems);
    }
    if report.problems.len() > before {
        return;
    }
    let checked = (kind.check)(&value);
    report.model_id = checked.model_id;
    report
        .problems
        .extend(checked.problems.into_iter().map(Diagnostic::from_problem));
    if forced.is_some() && report.errors() == 0 {
        report.document = Some(value);
    }
}

/// Applies `rename` to every object key; two keys that become the same are
/// an error.
fn rename_keys(value: Value, rename: fn(&str) -> String) -> Result<Value, Diagnostic> {
    fn at(
        value: Value,
        rename: fn(&str) -> String,
        pointer: &mut String,
    ) -> Result<Value, Diagnostic> {
        match value {
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                let mut originals: Vec<String> = Vec::with_capacity(map.len());
                for (key, child) in map {
                    let new = rename(&key);
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&card::escape_pointer(&new));
                    if out.contains_key(&new) {
                        let first = originals
                            .iter()
                            .find(|original| rename(original) == new)
                            .map_or(new.as_str(), String::as_str);
                        let mut diagnostic = Diagnostic::error(
                            pointer.clone(),
                            format!("`{first}` and `{key}` name the same field"),
                        );
                        diagnostic.at_key = true;
                        return Err(diagnostic);
                    }
                    let child = at(child, rename, pointer)?;
                    pointer.truncate(len);
                    originals.push(key);
                    out.insert(new, child);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, child) in items.into_iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    out.push(at(child, rename, pointer)?);
                    pointer.truncate(len);
                }
                Ok(Value::Array(out))
            }
            other => Ok(other),
        }
    }
    at(value, rename, &mut String::new())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A value as short JSON for messages.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    match value {
        Value::String(s) => {
            let head: String = s.chars().take(40).collect();
            format!("\"{head}...\"")
        }
        other => type_name(other).to_string(),
    }
}

fn schema_diagnostics(
    error: &jsonschema::ValidationError<'_>,
    schema: Option<&Value>,
    out: &mut Vec<Diagnostic>,
) {
    use jsonschema::error::ValidationErrorKind as Kind;
    let pointer = error.instance_path().as_str().to_string();
    match error.kind() {
        Kind::AdditionalProperties { unexpected } => {
            let known = schema.and_then(|s| allowed_properties(s, error.schema_path().as_str()));
            for name in unexpected {
                let mut message = format!("unknown field `{name}`");
                if let Some(suggestion) = known.as_ref().and_then(|k| closest(name, k)) {
                    message.push_str(&format!("; did you mean `{suggestion}`?"));
                }
                let mut diagnostic =
                    Diagnostic::error(format!("{pointer}/{}", card::escape_pointer(name)), message);
                diagnostic.at_key = true;
                out.push(diagnostic);
            }
        }
        Kind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            out.push(Diagnostic::error(
                format!("{pointer}/{}", card::escape_pointer(&name)),
                format!("missing required field `{name}`"),
            ));
        }
        Kind::AnyOf { context } | Kind::OneOfNotValid { context } => {
            let instance = error.instance();
            // An enum whose variants are documented is a `oneOf` of
            // constants: list them, and the likely one.
            let consts: Option<Vec<&Value>> = context
                .iter()
                .map(|branch| match branch.as_slice() {
                    [only] => match only.kind() {
                        Kind::Constant { expected_value } => Some(&**expected_value),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            if let Some(consts) = consts.filter(|c| !c.is_empty()) {
                let names: Vec<String> = consts.iter().map(|v| v.to_string()).collect();
                let mut message = format!("{} is not one of {}", short(instance), names.join(", "));
                let known: Vec<String> = consts
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if let Some(hit) = instance.as_str().and_then(|given| closest(given, &known)) {
                    message.push_str(&format!("; did you mean `{hit}`?"));
                }
                out.push(Diagnostic::error(pointer, message));
                return;
            }
            // One of several fields is required (`address` or its Ansible
            // name): name them.
            let required: Option<Vec<String>> = context
                .iter()
                .map(|branch| match branch.as_slice() {
                    [only] => match only.kind() {
                        Kind::Required { property } => property.as_str().map(str::to_owned),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            if let Some(names) = required.filter(|n| !n.is_empty()) {
                let others: Vec<String> = names[1..].iter().map(|n| format!("`{n}`")).collect();
                out.push(Diagnostic::error(
                    format!("{pointer}/{}", card::escape_pointer(&names[0])),
                    format!(
                        "missing required field `{}`{}",
                        names[0],
                        if others.is_empty() {
                            String::new()
                        } else {
                            format!(" (or {})", others.join(" or "))
                        }
                    ),
                ));
                return;
            }
            // `Option<T>` is `anyOf: [T, null]`: report why T failed rather
            // than that nothing matched.
            let specific: Vec<&Vec<jsonschema::ValidationError<'static>>> = context
                .iter()
                .filter(|branch| !is_plain_type_mismatch(branch, &pointer))
                .collect();
            if let [branch] = specific.as_slice() {
                for inner in branch.iter() {
                    schema_diagnostics(inner, schema, out);
                }
            } else {
                let expected: Vec<String> = context
                    .iter()
                    .filter_map(|branch| match branch.as_slice() {
                        [only] => match only.kind() {
                            Kind::Type { kind } => Some(type_kind_text(kind)),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
                let message = if expected.len() == context.len() && !expected.is_empty() {
                    format!(
                        "{} is not of type {}",
                        short(instance),
                        expected.join(" or ")
                    )
                } else {
                    format!(
                        "{} does not match any of the allowed forms",
                        short(instance)
                    )
                };
                out.push(Diagnostic::error(pointer, message));
            }
        }
        Kind::Type { kind } => out.push(Diagnostic::error(
            pointer,
            format!(
                "{} is not of type {}",
                short(error.instance()),
                type_kind_text(kind)
            ),
        )),
        Kind::Enum { options } => {
            let options = match options.as_ref() {
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            out.push(Diagnostic::error(
                pointer,
                format!("{} is not one of {options}", short(error.instance())),
            ));
        }
        _ => {
            let mut message = error.to_string();
            if message.chars().count() > 200 {
                message = message.chars().take(200).collect::<String>() + "...";
            }
            out.push(Diagnostic::error(pointer, message));
        }
    }
}

/// Whether a branch failed only because the value has another type (the
/// `null` branch of an optional field).
fn is_plain_type_mismatch(branch: &[jsonschema::ValidationError<'_>], pointer: &str) -> bool {
    matches!(branch, [only] if matches!(only.kind(), jsonschema::error::ValidationErrorKind::Type { .. })
        && only.instance_path().as_str() == pointer)
}

fn type_kind_text(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    match kind {
        TypeKind::Single(t) => format!("\"{t}\""),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// The property names the schema at `schema_path` (the failing
/// `additionalProperties` keyword) allows.
fn allowed_properties(schema: &Value, schema_path: &str) -> Option<Vec<String>> {
    let object_path = schema_path.strip_suffix("/additionalProperties")?;
    let mut node = schema.pointer(object_path)?;
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        node = schema.pointer(reference.strip_prefix('#')?)?;
    }
    let properties = node.get("properties")?.as_object()?;
    Some(properties.keys().cloned().collect())
}

/// The allowed name closest to `name`, if close enough to be a likely typo.
fn closest<'k>(name: &str, known: &'k [String]) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase().replace(['_', '-'], "");
    known
        .iter()
        .map(|k| {
            let distance = if k.to_ascii_lowercase() == lower {
                0
            } else {
                edit_distance(&lower, &k.to_ascii_lowercase())
            };
            (distance, k)
        })
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = current;
        }
    }
    row[b.len()]
}

/// Writes the report in `format`.
pub fn render(report: &Report, format: ReportFormat, out: &mut dyn Write) -> io::Result<()> {
    let summary = report.summary();
    match format {
        ReportFormat::Text => {
            for file in &report.files {
                for d in &file.problems {
                    write!(out, "{}", file.path)?;
                    if let Some(location) = d.location {
                        write!(out, ":{location}")?;
                    }
                    write!(out, ": ")?;
                    if d.severity == DiagnosticSeverity::Warning {
                        write!(out, "warning: ")?;
                    }
                    if !d.pointer.is_empty() {
                        write!(out, "{}: ", d.pointer)?;
                    }
                    writeln!(out, "{}", d.message)?;
                }
            }
            writeln!(out, "{}", summary_line(&summary))
        }
        ReportFormat::Github => {
            for file in &report.files {
                for d in &file.problems {
                    let command = match d.severity {
                        DiagnosticSeverity::Error => "error",
                        DiagnosticSeverity::Warning => "warning",
                    };
                    write!(out, "::{command} file={}", escape_property(&file.path))?;
                    if let Some(location) = d.location {
                        write!(out, ",line={},col={}", location.line, location.column)?;
                    }
                    let message = if d.pointer.is_empty() {
                        d.message.clone()
                    } else {
                        format!("{}: {}", d.pointer, d.message)
                    };
                    writeln!(out, "::{}", escape_data(&message))?;
                }
            }
            writeln!(out, "{}", summary_line(&summary))
        }
        ReportFormat::Json => {
            #[derive(Serialize)]
            struct Document<'r> {
                files: &'r [FileReport],
                summary: Summary,
            }
            let document = Document {
                files: &report.files,
                summary,
            };
            serde_json::to_writer_pretty(&mut *out, &document)?;
            writeln!(out)
        }
    }
}

/// `N files checked: N valid, N invalid, N warnings`.
pub fn summary_line(summary: &Summary) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    format!(
        "{} checked: {} valid, {} invalid, {}",
        plural(summary.files, "file"),
        summary.valid,
        summary.invalid,
        plural(summary.warnings, "warning")
    )
}

/// GitHub workflow command message escaping.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub workflow command property escaping.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_keys_are_camelized_but_values_are_not() {
        let value = serde_json::json!({
            "model_id": "a/b",
            "storage_size": {"in_bytes": 5},
            "reasoning": {"format": "token_delimited"},
            "components": [{"component_name": "x"}]
        });
        assert_eq!(
            rename_keys(value, card::snake_to_camel).unwrap(),
            serde_json::json!({
                "modelId": "a/b",
                "storageSize": {"inBytes": 5},
                "reasoning": {"format": "token_delimited"},
                "components": [{"componentName": "x"}]
            })
        );
    }

    #[test]
    fn same_field_in_both_spellings_is_an_error_at_the_key() {
        let value = serde_json::json!({"placement": {"min_vram_gib": 1, "minVramGib": 2}});
        let e = rename_keys(value, card::snake_to_camel).unwrap_err();
        assert_eq!(e.pointer, "/placement/minVramGib");
        assert!(e.at_key);
        assert_eq!(
            e.message,
            "`min_vram_gib` and `minVramGib` name the same field"
        );
    }

    #[test]
    fn a_file_of_a_known_kind_is_read_once_and_kept_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.toml");
        std::fs::write(
            &path,
            "model_id = \"a/b\"\nn_layers = 2\nhidden_size = 8\nsupports_tensor = false\ntasks = [\"TextGeneration\"]\n[storage_size]\nin_bytes = 1048576\n",
        )
        .unwrap();
        let report = validate_file_as(&path, DocKind::Card);
        assert_eq!(report.errors(), 0, "{:?}", report.problems);
        let card: card::ModelCard =
            serde_json::from_value(report.into_document().unwrap()).unwrap();
        assert_eq!((card.model_id.as_str(), card.n_layers), ("a/b", 2));
        let report = validate_file_as(&path, DocKind::Inventory);
        assert_eq!(
            report.problems[0].message,
            "this is a model card, not an inventory; were two file arguments swapped?"
        );
        assert_eq!(report.into_document(), None);
    }

    fn check(text: &str) -> FileReport {
        validate_text(Path::new("x.yaml"), text, Format::Yaml)
    }

    fn lines(report: &FileReport) -> Vec<String> {
        report
            .problems
            .iter()
            .map(|d| {
                let at = d.location.map(|l| l.to_string()).unwrap_or_default();
                format!("{at} {} {}", d.pointer, d.message)
            })
            .collect()
    }

    const VALID: &str = "modelId: org/model\nstorageSize: {inBytes: 1000}\nnLayers: 4\nhiddenSize: 64\nsupportsTensor: false\ntasks: [TextGeneration]\n";

    #[test]
    fn a_valid_card_has_no_problems() {
        let report = check(VALID);
        assert!(report.valid, "{:?}", lines(&report));
        assert_eq!(report.kind, Some("card"));
        assert_eq!(report.model_id.as_deref(), Some("org/model"));
    }

    #[test]
    fn all_schema_errors_are_reported_with_positions() {
        let text = VALID
            .replace("nLayers: 4", "nLayers: -1")
            .replace("hiddenSize: 64", "hiddenSize: big")
            + "layers: 3\n";
        let report = check(&text);
        assert_eq!(
            lines(&report),
            [
                "3:10 /nLayers -1 is less than the minimum of 1",
                "4:13 /hiddenSize \"big\" is not of type \"integer\"",
                "7:1 /layers unknown field `layers`; did you mean `nLayers`?",
            ]
        );
        assert!(!report.valid);
    }

    #[test]
    fn missing_fields_point_at_the_parent() {
        let report = check(
            "modelId: a/b\nstorageSize: {inBytes: 1}\nnLayers: 1\nhiddenSize: 1\ntasks: []\n",
        );
        assert_eq!(
            lines(&report),
            ["1:1 /supportsTensor missing required field `supportsTensor`"]
        );
    }

    #[test]
    fn optional_enum_errors_name_the_enum_not_any_of() {
        let report = check(&(VALID.to_string() + "reasoning: {format: tokens}\n"));
        assert_eq!(
            lines(&report),
            ["7:21 /reasoning/format \"tokens\" is not one of \"none\", \"token_delimited\", \"channel_delimited\""]
        );
        let report = check(&(VALID.to_string() + "vision: 3\n"));
        assert_eq!(
            lines(&report),
            ["7:9 /vision 3 is not of type \"object\" or \"null\""]
        );
    }

    #[test]
    fn semantic_rules_run_only_after_the_schema_passes() {
        let text = VALID.to_string() + "ggufFile: ../m.gguf\n";
        let report = check(&text);
        assert_eq!(
            lines(&report),
            ["7:11 /ggufFile `ggufFile` `../m.gguf` must not contain `..` or empty path components"]
        );
        let text = VALID.replace("nLayers: 4", "nLayers: 0") + "ggufFile: ../m.gguf\n";
        assert_eq!(check(&text).problems.len(), 1);
    }

    #[test]
    fn snake_case_toml_card_validates_and_locates() {
        let text = "model_id = \"org/m\"\nn_layers = 0\nhidden_size = 8\nsupports_tensor = false\ntasks = [\"TextGeneration\"]\n\n[storage_size]\nin_bytes = 5\n";
        let report = validate_text(Path::new("org--m.toml"), text, Format::Toml);
        assert_eq!(
            lines(&report),
            ["2:12 /nLayers 0 is less than the minimum of 1"]
        );
        let ok = text.replace("n_layers = 0", "n_layers = 2");
        assert!(validate_text(Path::new("org--m.toml"), &ok, Format::Toml).valid);
    }

    #[test]
    fn both_spellings_of_a_field_are_an_error() {
        let report = check(&(VALID.to_string() + "model_id: other\n"));
        assert_eq!(
            lines(&report),
            ["7:1 /modelId `modelId` and `model_id` name the same field"]
        );
    }

    #[test]
    fn top_level_must_be_a_mapping() {
        assert_eq!(
            lines(&check("- a\n- b\n")),
            ["1:1  expected a mapping of fields at the top level, found a list"]
        );
    }

    #[test]
    fn integers_beyond_the_type_fail_the_schema() {
        let report = check(&VALID.replace("nLayers: 4", "nLayers: 4294967296"));
        assert_eq!(
            lines(&report),
            ["3:10 /nLayers 4294967296 is greater than the maximum of 4294967295"]
        );
    }

    #[test]
    fn summary_and_github_escaping() {
        assert_eq!(
            summary_line(&Summary {
                files: 1,
                valid: 1,
                invalid: 0,
                warnings: 1
            }),
            "1 file checked: 1 valid, 0 invalid, 1 warning"
        );
        assert_eq!(escape_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn closest_name_suggestions() {
        let known: Vec<String> = ["nLayers", "hiddenSize", "modelId"]
            .map(String::from)
            .into();
        assert_eq!(closest("n_layer", &known), Some("nLayers"));
        assert_eq!(closest("hiddensize", &known), Some("hiddenSize"));
        assert_eq!(closest("completelyDifferent", &known), None);
    }
}
