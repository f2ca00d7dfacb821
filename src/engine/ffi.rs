//! Every call into llama.cpp and ggml (through `llama-cpp-sys-2`) and the only
//! `unsafe` code of the engine.
//!
//! It owns the raw handles (model, context, grammar sampler) and
//! exposes them as safe types whose methods cannot be misused from safe Rust
//! (GGUF headers are read by [`crate::gguf`], the one reader, not here):
//! ids are range-checked before they reach C++ code that would abort on
//! them, buffers are sized from the call's own return values, and a context
//! never outlives its model (it holds an `Arc`). Error strings come back as
//! `String`s; `llama.rs` turns them into typed errors that name the file.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, Once};

use llama_cpp_sys_2 as sys;

/// llama.cpp error lines kept to explain a failed call (loader errors come
/// only through the log callback).
const LOG_KEEP: usize = 16;

struct LogState {
    /// Incremented per finished error line, so a caller can take the lines
    /// logged since it started.
    seq: u64,
    errors: VecDeque<(u64, String)>,
    /// Partial line (ggml logs a line in several `CONT` pieces).
    partial: String,
    partial_is_error: bool,
    /// `SKULK_LLAMA_LOG=debug|info|warn|error`: also print to stderr.
    echo_level: u32,
}

static LOG: Mutex<LogState> = Mutex::new(LogState {
    seq: 0,
    errors: VecDeque::new(),
    partial: String::new(),
    partial_is_error: false,
    echo_level: u32::MAX,
});

fn log_state() -> std::sync::MutexGuard<'static, LogState> {
    LOG.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe extern "C" fn log_callback(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: ggml passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // Never unwind into C: everything below is infallible except allocation.
    let mut st = log_state();
    if level != sys::GGML_LOG_LEVEL_CONT {
        st.partial_is_error = level == sys::GGML_LOG_LEVEL_ERROR;
        if level >= st.echo_level {
            // A new line of llama.cpp's log: dated like skulk's own lines.
            crate::output::fragment(&text, true);
        }
    } else if st.partial_is_error && sys::GGML_LOG_LEVEL_ERROR >= st.echo_level {
        crate::output::fragment(&text, false);
    }
    if !st.partial_is_error {
        return;
    }
    st.partial.push_str(&text);
    while let Some(nl) = st.partial.find('\n') {
        let line: String = st.partial.drain(..=nl).collect();
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        st.seq += 1;
        let seq = st.seq;
        st.errors.push_back((seq, line));
        while st.errors.len() > LOG_KEEP {
            st.errors.pop_front();
        }
    }
}

/// Sequence number to pass to [`errors_since`] after a call.
fn log_mark() -> u64 {
    log_state().seq
}

/// llama.cpp error lines logged since `mark`, joined; a fallback otherwise.
fn errors_since(mark: u64, fallback: &str) -> String {
    let st = log_state();
    let lines: Vec<&str> = st
        .errors
        .iter()
        .filter(|(s, _)| *s > mark)
        .map(|(_, l)| l.as_str())
        .collect();
    if lines.is_empty() {
        fallback.to_string()
    } else {
        lines.join("; ")
    }
}

/// Installs the log callback and initialises the backends, once per process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        use crate::settings::env::{llama_log, LlamaLog};
        let echo = match llama_log() {
            Some(LlamaLog::Debug) => sys::GGML_LOG_LEVEL_DEBUG,
            Some(LlamaLog::Info) => sys::GGML_LOG_LEVEL_INFO,
            Some(LlamaLog::Warn) => sys::GGML_LOG_LEVEL_WARN,
            Some(LlamaLog::Error) => sys::GGML_LOG_LEVEL_ERROR,
            None => u32::MAX,
        };
        log_state().echo_level = echo;
        // SAFETY: the callback is a plain function valid for the whole
        // process and needs no user data; llama_backend_init has no
        // preconditions and runs once here.
        unsafe {
            sys::llama_log_set(Some(log_callback), ptr::null_mut());
            sys::llama_backend_init();
        }
    });
}

/// Whether this build of llama.cpp has a GPU backend (CUDA, Metal, Vulkan)
/// that can take offloaded layers.
pub fn supports_gpu_offload() -> bool {
    init();
    // SAFETY: a query with no preconditions once the backends are initialised.
    unsafe { sys::llama_supports_gpu_offload() }
}

fn c_path(path: &Path) -> Result<CString, String> {
    let s = path
        .to_str()
        .ok_or_else(|| "the path is not valid UTF-8".to_string())?;
    CString::new(s).map_err(|_| "the path contains a NUL byte".to_string())
}

// ---------------------------------------------------------------------------
// Model (weights and vocabulary)

/// A loaded llama.cpp model: weights (mmapped or offloaded) and vocabulary.
pub struct Model {
    ptr: NonNull<sys::llama_model>,
    vocab: NonNull<sys::llama_vocab>,
    n_vocab: i32,
}

// SAFETY: after loading, llama.cpp never mutates a model: contexts and the
// vocabulary functions used here (tokenize, token_to_piece, is_eog, chat
// template, metadata) only read it, and llama.cpp supports several contexts
// on one model from different threads (llama-server tokenizes on its HTTP
// threads while a context decodes).
unsafe impl Send for Model {}
// SAFETY: see `Send`: every method takes `&self` and only reads.
unsafe impl Sync for Model {}

impl Model {
    /// Loads `path` with `n_gpu_layers` layers offloaded (negative: all).
    pub fn load(path: &Path, n_gpu_layers: i32) -> Result<Model, String> {
        init();
        let c = c_path(path)?;
        let mark = log_mark();
        // SAFETY: default params are plain data; `c` is a valid path string
        // that outlives the call.
        let raw = unsafe {
            let mut params = sys::llama_model_default_params();
            params.n_gpu_layers = n_gpu_layers;
            sys::llama_model_load_from_file(c.as_ptr(), params)
        };
        let ptr = NonNull::new(raw).ok_or_else(|| errors_since(mark, "no reason logged"))?;
        // SAFETY: `ptr` is a live model; its vocab lives as long as it does.
        let (vocab, n_vocab) = unsafe {
            let v = sys::llama_model_get_vocab(ptr.as_ptr());
            (
                v,
                if v.is_null() {
                    0
                } else {
                    sys::llama_vocab_n_tokens(v)
                },
            )
        };
        let Some(vocab) = NonNull::new(vocab.cast_mut()) else {
            // SAFETY: freeing the model we just loaded, once.
            unsafe { sys::llama_model_free(ptr.as_ptr()) };
            return Err("the model has no vocabulary".into());
        };
        Ok(Model {
            ptr,
            vocab,
            n_vocab,
        })
    }

    pub fn n_embd(&self) -> usize {
        // SAFETY: live model.
        unsafe { sys::llama_model_n_embd(self.ptr.as_ptr()) }.max(0) as usize
    }

    pub fn n_layer(&self) -> usize {
        // SAFETY: live model.
        unsafe { sys::llama_model_n_layer(self.ptr.as_ptr()) }.max(0) as usize
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab.max(0) as usize
    }

    /// Sliding-window size (0 when the model has no sliding-window layers).
    pub fn n_swa(&self) -> u32 {
        // SAFETY: live model.
        unsafe { sys::llama_model_n_swa(self.ptr.as_ptr()) }.max(0) as u32
    }

    /// Whether some of the model's layers keep a recurrent state (Mamba,
    /// gated delta nets, short convolutions) instead of, or besides, a KV
    /// cache: such a state cannot be cut back to an earlier position.
    pub fn has_recurrent_state(&self) -> bool {
        // SAFETY: live model; plain queries.
        unsafe {
            sys::llama_model_is_recurrent(self.ptr.as_ptr())
                || sys::llama_model_is_hybrid(self.ptr.as_ptr())
        }
    }

    /// Positions per token that llama.cpp reads from a batch of hidden rows:
    /// 4 for multi-section RoPE (M-RoPE and interleaved M-RoPE), else 1.
    pub fn positions_per_embd(&self) -> usize {
        // SAFETY: live model; a plain query.
        let rope = unsafe { sys::llama_model_rope_type(self.ptr.as_ptr()) } as i64;
        // `GGML_ROPE_TYPE_MROPE` (8) and `GGML_ROPE_TYPE_IMROPE` (40) share bit
        // 8; vision RoPE (24) does too but no text model uses it.
        if rope >= 0 && rope & 8 != 0 {
            4
        } else {
            1
        }
    }

    /// The chat template stored in the GGUF (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: live model; a null name asks for the default template; the
        // returned string is owned by the model.
        unsafe {
            let p = sys::llama_model_chat_template(self.ptr.as_ptr(), ptr::null());
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }

    /// Renders `messages` (role, content) with `template` (a Jinja source
    /// that llama.cpp recognises, or a built-in name such as `gemma`).
    pub fn apply_chat_template(
        template: &str,
        messages: &[(String, String)],
        add_assistant: bool,
    ) -> Result<String, String> {
        let tmpl = CString::new(template).map_err(|_| "the template contains a NUL byte")?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|(r, c)| Ok((CString::new(r.as_str())?, CString::new(c.as_str())?)))
            .collect::<Result<_, std::ffi::NulError>>()
            .map_err(|_| "a message contains a NUL byte".to_string())?;
        let msgs: Vec<sys::llama_chat_message> = owned
            .iter()
            .map(|(r, c)| sys::llama_chat_message {
                role: r.as_ptr(),
                content: c.as_ptr(),
            })
            .collect();
        let chars: usize = messages.iter().map(|(r, c)| r.len() + c.len()).sum();
        let mut buf = vec![0u8; (chars * 2 + 256).min(i32::MAX as usize)];
        for _ in 0..2 {
            // SAFETY: `msgs` points into `owned`, alive for the call; the
            // buffer length passed is the buffer's real length.
            let n = unsafe {
                sys::llama_chat_apply_template(
                    tmpl.as_ptr(),
                    msgs.as_ptr(),
                    msgs.len(),
                    add_assistant,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                )
            };
            if n < 0 {
                return Err("llama.cpp does not recognise this chat template".into());
            }
            let n = n as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return String::from_utf8(buf)
                    .map_err(|_| "the rendered prompt is not valid UTF-8".into());
            }
            buf = vec![0u8; n];
        }
        Err("the rendered prompt kept growing".into())
    }

    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<i32>, String> {
        let len = i32::try_from(text.len()).map_err(|_| "the text is over 2 GiB")?;
        // A token covers at least one byte, plus BOS/EOS.
        let mut out = vec![0i32; text.len() + 2];
        for _ in 0..2 {
            // SAFETY: `text` is valid for `len` bytes (no NUL needed); `out`
            // has exactly the capacity passed.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab.as_ptr(),
                    text.as_ptr().cast(),
                    len,
                    out.as_mut_ptr(),
                    out.len().min(i32::MAX as usize) as i32,
                    add_special,
                    true,
                )
            };
            if n == i32::MIN {
                return Err("the token count overflows".into());
            }
            if n >= 0 {
                out.truncate(n as usize);
                return Ok(out);
            }
            out = vec![0i32; n.unsigned_abs() as usize];
        }
        Err("the token count kept growing".into())
    }

    fn valid_token(&self, token: i32) -> bool {
        (0..self.n_vocab).contains(&token)
    }

    pub fn token_to_piece(&self, token: i32) -> Vec<u8> {
        self.piece(token, false)
    }

    /// Like [`Model::token_to_piece`], with control tokens written out.
    pub fn token_to_piece_special(&self, token: i32) -> Vec<u8> {
        self.piece(token, true)
    }

    /// Text of the BOS and EOS tokens (`None` when the vocabulary has none).
    pub fn bos_eos_text(&self) -> (Option<String>, Option<String>) {
        // SAFETY: live vocabulary; these only read it.
        let (bos, eos) = unsafe {
            (
                sys::llama_vocab_bos(self.vocab.as_ptr()),
                sys::llama_vocab_eos(self.vocab.as_ptr()),
            )
        };
        let text = |t: i32| {
            self.valid_token(t)
                .then(|| String::from_utf8_lossy(&self.piece(t, true)).into_owned())
                .filter(|s| !s.is_empty())
        };
        (text(bos), text(eos))
    }

    fn piece(&self, token: i32, special: bool) -> Vec<u8> {
        if !self.valid_token(token) {
            return Vec::new();
        }
        let mut buf = vec![0u8; 32];
        for _ in 0..2 {
            // SAFETY: `token` is a valid id (llama.cpp aborts on others); the
            // buffer length passed is its real length.
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab.as_ptr(),
                    token,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    0,
                    special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf = vec![0u8; n.unsigned_abs() as usize];
        }
        Vec::new()
    }

    pub fn is_eog(&self, token: i32) -> bool {
        // SAFETY: only valid ids reach llama.cpp.
        self.valid_token(token) && unsafe { sys::llama_vocab_is_eog(self.vocab.as_ptr(), token) }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: every context and grammar holds an Arc<Model>, so none is
        // alive now; the model is freed once.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) }
    }
}

// ---------------------------------------------------------------------------
// Grammar (llama.cpp's GBNF sampler, used as a mask only)

/// llama.cpp's grammar over a model's vocabulary. Only [`GrammarMask::apply`]
/// and [`GrammarMask::accept`] reach llama.cpp; accepting a token the grammar
/// forbids would throw through C (an abort), so `accept` refuses ids that the
/// last `apply` masked out or never saw.
pub struct GrammarMask {
    ptr: NonNull<sys::llama_sampler>,
    model: Arc<Model>,
    scratch: Vec<sys::llama_token_data>,
    /// Bit per vocabulary id: the last `apply` allowed it; the only ids
    /// `accept` passes on.
    allowed: Vec<u64>,
}

// SAFETY: the sampler is owned by this value alone and used from one thread
// at a time (`&mut self`); the model it reads is `Sync`.
unsafe impl Send for GrammarMask {}

impl GrammarMask {
    /// Parses `gbnf` (root rule `root`); lazy when `triggers` (regular
    /// expressions) are given. Errors carry llama.cpp's reason.
    pub fn new(model: Arc<Model>, gbnf: &str, triggers: &[String]) -> Result<GrammarMask, String> {
        init();
        let grammar = CString::new(gbnf).map_err(|_| "the grammar contains a NUL byte")?;
        let root = CString::new("root").expect("no NUL");
        let patterns: Vec<CString> = triggers
            .iter()
            .map(|t| CString::new(t.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| "a trigger pattern contains a NUL byte")?;
        let ptrs: Vec<*const c_char> = patterns.iter().map(|p| p.as_ptr()).collect();
        let mark = log_mark();
        // SAFETY: the vocabulary lives as long as `model`, which this value
        // keeps; every string is NUL-terminated and outlives the call; the
        // pattern array has the length passed.
        let raw = unsafe {
            if ptrs.is_empty() {
                sys::llama_sampler_init_grammar(
                    model.vocab.as_ptr(),
                    grammar.as_ptr(),
                    root.as_ptr(),
                )
            } else {
                sys::llama_sampler_init_grammar_lazy_patterns(
                    model.vocab.as_ptr(),
                    grammar.as_ptr(),
                    root.as_ptr(),
                    ptrs.as_ptr().cast_mut(),
                    ptrs.len(),
                    ptr::null(),
                    0,
                )
            }
        };
        let ptr = NonNull::new(raw)
            .ok_or_else(|| errors_since(mark, "llama.cpp could not parse the grammar"))?;
        let words = model.n_vocab().div_ceil(64);
        Ok(GrammarMask {
            ptr,
            model,
            scratch: Vec::new(),
            allowed: vec![0; words],
        })
    }

    /// Sets the logit of every candidate the grammar forbids to -inf.
    pub fn apply(&mut self, candidates: &mut [(i32, f32)]) {
        self.scratch.clear();
        self.scratch.extend(
            candidates
                .iter()
                .filter(|(id, _)| self.model.valid_token(*id))
                .map(|&(id, logit)| sys::llama_token_data { id, logit, p: 0.0 }),
        );
        let mut arr = sys::llama_token_data_array {
            data: self.scratch.as_mut_ptr(),
            size: self.scratch.len(),
            selected: -1,
            sorted: false,
        };
        // SAFETY: live sampler; `arr` points into `scratch`, alive for the
        // call, with its real length; every id is in the vocabulary.
        unsafe { sys::llama_sampler_apply(self.ptr.as_ptr(), &mut arr) };
        self.allowed.fill(0);
        let mut j = 0;
        for c in candidates.iter_mut() {
            if !self.model.valid_token(c.0) {
                c.1 = f32::NEG_INFINITY;
                continue;
            }
            let d = &self.scratch[j];
            j += 1;
            debug_assert_eq!(d.id, c.0);
            if d.logit == f32::NEG_INFINITY {
                c.1 = f32::NEG_INFINITY;
            } else {
                let t = c.0 as usize;
                self.allowed[t / 64] |= 1 << (t % 64);
            }
        }
    }

    /// Advances the grammar past `token`. Returns false (and leaves the
    /// grammar as it was) for a token the last `apply` did not allow.
    pub fn accept(&mut self, token: i32) -> bool {
        let allowed = self.model.valid_token(token) && {
            let t = token as usize;
            self.allowed[t / 64] & (1 << (t % 64)) != 0
        };
        if !allowed {
            return false;
        }
        // SAFETY: live sampler; the token was allowed by the grammar's own
        // mask for its current state, so accepting it cannot throw.
        unsafe { sys::llama_sampler_accept(self.ptr.as_ptr(), token) };
        self.allowed.fill(0);
        true
    }
}

impl Drop for GrammarMask {
    fn drop(&mut self) {
        // SAFETY: the sampler was made by llama_sampler_init_grammar* and is
        // freed once; it is in no chain.
        unsafe { sys::llama_sampler_free(self.ptr.as_ptr()) }
    }
}

// ---------------------------------------------------------------------------
// Context (KV cache, graph, decode)

/// What the eval callback does with two named graph tensors: copies out the
/// rows of one (`capture`, then stops the graph) and overwrites the other
/// with given rows (`inject`, then lets the graph go on).
struct Hooks {
    /// Tensor to copy and stop at, NUL-terminated (`l_out-N`).
    capture: Option<Vec<u8>>,
    /// Tensor to overwrite with `inject_rows`, NUL-terminated.
    inject: Option<Vec<u8>>,
    n_embd: usize,
    rows: Vec<f32>,
    /// Rows to write into `inject` during the current decode (empty: none).
    inject_rows: Vec<f32>,
    injected: bool,
    error: Option<String>,
}

/// Whether `t` is an f32, contiguous `n_embd x n_rows` matrix.
///
/// # Safety
/// `t` must be a live tensor.
unsafe fn is_rows(t: &sys::ggml_tensor, n_embd: usize) -> bool {
    t.type_ == sys::GGML_TYPE_F32
        && t.ne[0] as usize == n_embd
        && t.ne[2] == 1
        && t.ne[3] == 1
        // SAFETY: `t` is live (the caller's contract).
        && unsafe { sys::ggml_is_contiguous(t) }
}

/// ggml calls this for every graph node with `ask = true` ("do you want this
/// one?") and, for the nodes we want, with `ask = false` once computed.
/// Returning false then cancels the rest of the graph (after a capture: the
/// lm_head and the rest of the model that this rank does not hold), and
/// llama_decode still succeeds; returning true computes the rest with what
/// the tensor now holds (after an injection).
unsafe extern "C" fn hooks_callback(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user: *mut c_void,
) -> bool {
    if t.is_null() || user.is_null() {
        return !ask;
    }
    // SAFETY: `user` is the Box<Hooks> pointer of the context being decoded
    // on this thread (ggml calls back synchronously from llama_decode, while
    // the Rust side holds `&mut Context` and does not touch the hooks).
    // `t` is a live tensor of the graph being computed.
    let (h, t) = unsafe { (&mut *user.cast::<Hooks>(), &mut *t) };
    // SAFETY: ggml tensor names are NUL-terminated within their 64 bytes.
    let name = unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_bytes_with_nul();
    let capture = h.capture.as_deref() == Some(name);
    let inject = h.inject.as_deref() == Some(name) && !h.inject_rows.is_empty();
    if ask {
        return capture || inject;
    }
    let shown = || String::from_utf8_lossy(&name[..name.len() - 1]).into_owned();
    if inject {
        let n_rows = t.ne[1].max(0) as usize;
        // SAFETY: `t` is live.
        if !unsafe { is_rows(t, h.n_embd) } || n_rows * h.n_embd != h.inject_rows.len() {
            h.error = Some(format!(
                "tensor `{}` has type {} and shape {:?}, expected f32 [{}, {}]",
                shown(),
                t.type_,
                t.ne,
                h.n_embd,
                h.inject_rows.len() / h.n_embd.max(1)
            ));
            return false;
        }
        // SAFETY: the tensor holds exactly `inject_rows.len()` f32 values
        // (checked above); tensor_set copies to whatever backend holds it.
        unsafe {
            sys::ggml_backend_tensor_set(
                t,
                h.inject_rows.as_ptr().cast(),
                0,
                h.inject_rows.len() * 4,
            );
        }
        h.injected = true;
        return true;
    }
    if !capture {
        return true;
    }
    let n_rows = t.ne[1].max(0) as usize;
    // SAFETY: `t` is live.
    if !unsafe { is_rows(t, h.n_embd) } {
        h.error = Some(format!(
            "tensor `{}` has type {} and shape {:?}, expected f32 [{}, n_tokens]",
            shown(),
            t.type_,
            t.ne,
            h.n_embd
        ));
        return false;
    }
    let start = h.rows.len();
    h.rows.resize(start + n_rows * h.n_embd, 0.0);
    // SAFETY: the destination has room for exactly ggml_nbytes(t) bytes
    // (f32, contiguous, n_embd x n_rows, checked above); tensor_get copies
    // from whatever backend (CPU or GPU) holds the tensor.
    unsafe {
        let bytes = sys::ggml_nbytes(t);
        debug_assert_eq!(bytes, n_rows * h.n_embd * 4);
        sys::ggml_backend_tensor_get(t, h.rows[start..].as_mut_ptr().cast(), 0, bytes);
    }
    false
}

/// Settings of one context.
pub struct ContextParams {
    /// KV cache cells, shared by every sequence (unified cache).
    pub n_ctx: u32,
    pub n_batch: u32,
    /// Sequences the cache holds at once; ids `0..n_seq_max`.
    pub n_seq_max: u32,
    pub threads: i32,
    /// Stop the graph after this tensor and keep its rows (non-final ranks).
    pub capture: Option<String>,
    /// Overwrite this tensor with the input rows of each hidden-row decode
    /// (architectures that transform input rows before the first layer, see
    /// `llama.rs`).
    pub inject: Option<String>,
}

/// llama.cpp's bound on sequence ids (`LLAMA_MAX_SEQ`).
pub const MAX_SEQ: u32 = 256;

pub enum Input<'a> {
    Tokens(&'a [i32]),
    /// `n_tokens x n_embd` rows.
    Embd(&'a [f32], usize),
}

/// Where one token of a batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMeta {
    pub pos: i32,
    /// Sequence id, below the context's `n_seq_max`.
    pub seq: i32,
    /// Whether the decode returns this token's row (logits on the last
    /// rank; every row must be an output on the others, see `llama.rs`).
    pub output: bool,
}

/// A llama.cpp context: one KV cache (unified: every sequence's cells in one
/// pool) and the compute state.
pub struct Context {
    ptr: NonNull<sys::llama_context>,
    /// Freed in Drop after the context (the callback may use it until then).
    hooks: Option<NonNull<Hooks>>,
    model: Arc<Model>,
    n_batch: usize,
    n_seq_max: u32,
    /// Positions per hidden row ([`Model::positions_per_embd`]).
    pos_per_embd: usize,
    // Batch buffers, reused between calls.
    tokens: Vec<i32>,
    pos: Vec<i32>,
    n_seq_id: Vec<i32>,
    seq_ids: Vec<i32>,
    seq_ptrs: Vec<*mut i32>,
    logits: Vec<i8>,
}

// SAFETY: a llama_context may be used from any thread as long as only one
// thread uses it at a time, which `&mut self` on every decoding method
// guarantees; the raw pointers in the batch buffers point into this struct's
// own vectors.
unsafe impl Send for Context {}

impl Context {
    pub fn new(model: Arc<Model>, p: &ContextParams) -> Result<Context, String> {
        if p.n_seq_max == 0 || p.n_seq_max > MAX_SEQ {
            return Err(format!(
                "`{}` sequences requested; llama.cpp holds 1 to {MAX_SEQ}",
                p.n_seq_max
            ));
        }
        let nul = |name: &String| {
            let mut bytes = name.as_bytes().to_vec();
            bytes.push(0);
            bytes
        };
        let hooks = (p.capture.is_some() || p.inject.is_some()).then(|| {
            let b = Box::new(Hooks {
                capture: p.capture.as_ref().map(nul),
                inject: p.inject.as_ref().map(nul),
                n_embd: model.n_embd(),
                rows: Vec::new(),
                inject_rows: Vec::new(),
                injected: false,
                error: None,
            });
            NonNull::from(Box::leak(b))
        });
        let mark = log_mark();
        // SAFETY: default params are plain data. The callback's user data is
        // the leaked Hooks box, freed only after llama_free in Drop. The
        // model outlives the context through `model`.
        let raw = unsafe {
            let mut cp = sys::llama_context_default_params();
            cp.n_ctx = p.n_ctx;
            cp.n_batch = p.n_batch;
            cp.n_ubatch = p.n_batch;
            cp.n_seq_max = p.n_seq_max;
            // One pool of cells for every sequence (llama-server's
            // `--kv-unified`): a batch mixing sequences stays one ubatch,
            // and one long request may use the whole context.
            cp.kv_unified = true;
            cp.n_threads = p.threads;
            cp.n_threads_batch = p.threads;
            cp.no_perf = true;
            if let Some(c) = hooks {
                cp.cb_eval = Some(hooks_callback);
                cp.cb_eval_user_data = c.as_ptr().cast();
            }
            sys::llama_init_from_model(model.ptr.as_ptr(), cp)
        };
        let Some(ptr) = NonNull::new(raw) else {
            if let Some(c) = hooks {
                // SAFETY: no context refers to the box; freed once.
                drop(unsafe { Box::from_raw(c.as_ptr()) });
            }
            return Err(errors_since(mark, "llama_init_from_model failed"));
        };
        Ok(Context {
            ptr,
            hooks,
            pos_per_embd: model.positions_per_embd(),
            model,
            n_batch: p.n_batch as usize,
            n_seq_max: p.n_seq_max,
            tokens: Vec::new(),
            pos: Vec::new(),
            n_seq_id: Vec::new(),
            seq_ids: Vec::new(),
            seq_ptrs: Vec::new(),
            logits: Vec::new(),
        })
    }

    pub fn n_ctx(&self) -> u32 {
        // SAFETY: live context.
        unsafe { sys::llama_n_ctx(self.ptr.as_ptr()) }
    }

    /// Decodes at most `n_batch` tokens, one [`TokenMeta`] per token. On
    /// success the captured rows (if this context captures) were appended
    /// to the capture buffer; take them with [`Context::take_captured`], and
    /// the logits of the outputs with [`Context::logits_ith`].
    pub fn decode(&mut self, input: Input<'_>, meta: &[TokenMeta]) -> Result<(), (i32, String)> {
        let n = match input {
            Input::Tokens(t) => t.len(),
            Input::Embd(d, n) => {
                if d.len() != n * self.model.n_embd() {
                    return Err((-1, "hidden rows do not match n_embd".into()));
                }
                n
            }
        };
        if n == 0 || n > self.n_batch {
            return Err((
                -1,
                format!("batch of {n} tokens, expected 1..={}", self.n_batch),
            ));
        }
        if meta.len() != n {
            return Err((-1, format!("{} token positions for {n} tokens", meta.len())));
        }
        if let Some(bad) = meta
            .iter()
            .find(|m| m.seq < 0 || m.seq as u32 >= self.n_seq_max || m.pos < 0)
        {
            return Err((
                -1,
                format!(
                    "sequence `{}` at position `{}` is outside 0..{} sequences",
                    bad.seq, bad.pos, self.n_seq_max
                ),
            ));
        }
        if let Input::Tokens(t) = input {
            if let Some(bad) = t.iter().find(|&&t| !self.model.valid_token(t)) {
                return Err((-1, format!("token id `{bad}` is outside the vocabulary")));
            }
            self.tokens.clear();
            self.tokens.extend_from_slice(t);
        }
        self.pos.clear();
        self.pos.extend(meta.iter().map(|m| m.pos));
        if matches!(input, Input::Embd(..)) && self.pos_per_embd > 1 {
            // Multi-section RoPE reads hidden rows' positions section-major
            // (`pos[j * n + i]`); llama.cpp expands a token's position to
            // `[p, p, p, 0]`, so hidden rows get the same.
            for j in 1..self.pos_per_embd {
                if j < 3 {
                    self.pos.extend(meta.iter().map(|m| m.pos));
                } else {
                    self.pos.extend(std::iter::repeat_n(0, n));
                }
            }
        }
        self.n_seq_id.clear();
        self.n_seq_id.resize(n, 1);
        self.seq_ids.clear();
        self.seq_ids.extend(meta.iter().map(|m| m.seq));
        let base = self.seq_ids.as_mut_ptr();
        self.seq_ptrs.clear();
        // SAFETY: `i < n = seq_ids.len()`, so each pointer is in bounds.
        self.seq_ptrs.extend((0..n).map(|i| unsafe { base.add(i) }));
        self.logits.clear();
        self.logits.extend(meta.iter().map(|m| i8::from(m.output)));
        let (token, embd) = match input {
            Input::Tokens(_) => (self.tokens.as_mut_ptr(), ptr::null_mut()),
            // llama_decode only reads `embd`; the cast to *mut is for the
            // C struct's field type.
            Input::Embd(d, _) => (ptr::null_mut(), d.as_ptr().cast_mut()),
        };
        let batch = sys::llama_batch {
            n_tokens: n as i32,
            token,
            embd,
            pos: self.pos.as_mut_ptr(),
            n_seq_id: self.n_seq_id.as_mut_ptr(),
            seq_id: self.seq_ptrs.as_mut_ptr(),
            logits: self.logits.as_mut_ptr(),
        };
        let inject = match (self.hooks, input) {
            // SAFETY: no decode is running; we hold &mut self.
            (Some(h), Input::Embd(d, _)) => unsafe {
                let h = &mut *h.as_ptr();
                h.error = None;
                h.injected = false;
                h.inject_rows.clear();
                if h.inject.is_some() {
                    h.inject_rows.extend_from_slice(d);
                }
                h.inject.is_some()
            },
            (Some(h), Input::Tokens(_)) => {
                // SAFETY: as above.
                unsafe { (*h.as_ptr()).error = None };
                false
            }
            (None, _) => false,
        };
        let mark = log_mark();
        // SAFETY: every array of `batch` has `n` elements and lives in `self`
        // or the caller's borrow for the duration of the call; `embd` rows are
        // n x n_embd (checked above); token ids are valid and sequence ids
        // below n_seq_max.
        let rc = unsafe { sys::llama_decode(self.ptr.as_ptr(), batch) };
        if rc != 0 {
            return Err((rc, errors_since(mark, "no reason logged")));
        }
        if let Some(h) = self.hooks {
            // SAFETY: the decode has returned; nothing else refers to it.
            let h = unsafe { &mut *h.as_ptr() };
            if let Some(e) = h.error.take() {
                return Err((0, e));
            }
            if inject && !h.injected {
                return Err((
                    0,
                    format!(
                        "the graph has no tensor `{}` to take the hidden rows",
                        String::from_utf8_lossy(h.inject.as_deref().unwrap_or(b"?\0"))
                            .trim_end_matches('\0')
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Rows captured since the last call (n_tokens x n_embd).
    pub fn take_captured(&mut self) -> Vec<f32> {
        match self.hooks {
            // SAFETY: no decode is running; we hold &mut self.
            Some(c) => std::mem::take(unsafe { &mut (*c.as_ptr()).rows }),
            None => Vec::new(),
        }
    }

    /// Logits of token `i` of the last decode (an index into that batch,
    /// whose `output` was set); `None` otherwise.
    pub fn logits_ith(&self, i: usize) -> Option<Vec<f32>> {
        let n = self.model.n_vocab();
        let i = i32::try_from(i).ok()?;
        // SAFETY: live context; llama.cpp returns null for a token that was
        // not an output of the last decode, else a row of n_vocab floats.
        unsafe {
            let p = sys::llama_get_logits_ith(self.ptr.as_ptr(), i);
            (!p.is_null()).then(|| std::slice::from_raw_parts(p, n).to_vec())
        }
    }

    fn memory(&self) -> sys::llama_memory_t {
        // SAFETY: live context; the memory lives as long as the context.
        unsafe { sys::llama_get_memory(self.ptr.as_ptr()) }
    }

    fn valid_seq(&self, seq: u32) -> Option<i32> {
        (seq < self.n_seq_max).then_some(seq as i32)
    }

    /// Removes sequence `seq`'s entries at positions >= `from`.
    pub fn seq_rm(&mut self, seq: u32, from: i32) -> bool {
        let mem = self.memory();
        let Some(seq) = self.valid_seq(seq) else {
            return false;
        };
        if mem.is_null() {
            return false;
        }
        // SAFETY: live memory of this context; a valid sequence id; -1
        // means "to the end".
        unsafe { sys::llama_memory_seq_rm(mem, seq, from, -1) }
    }

    /// Smallest and largest position of sequence `seq` in the cache (-1 if
    /// it holds none).
    pub fn seq_pos_range(&self, seq: u32) -> (i32, i32) {
        let mem = self.memory();
        let Some(seq) = self.valid_seq(seq) else {
            return (-1, -1);
        };
        if mem.is_null() {
            return (-1, -1);
        }
        // SAFETY: live memory of this context; a valid sequence id.
        unsafe {
            (
                sys::llama_memory_seq_pos_min(mem, seq),
                sys::llama_memory_seq_pos_max(mem, seq),
            )
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: freed once, context first (it may reference the hooks
        // box), then what it referenced.
        unsafe {
            sys::llama_free(self.ptr.as_ptr());
            if let Some(c) = self.hooks {
                drop(Box::from_raw(c.as_ptr()));
            }
        }
    }
}
