//! The GGUF header reader: magic, version, metadata, tensor infos, alignment
//! and data offset, read sequentially from the start of a file or stream.
//!
//! Invariant: reading never trusts a count or length from the file. Every read
//! is checked against the bytes the file still holds (so a truncated file is a
//! [`GgufError::Truncated`] naming the byte, never a panic), counts are bounded
//! by the bytes their elements need, and the header as a whole is capped, so a
//! hostile header cannot make skulk allocate more than a small multiple of
//! [`MAX_HEADER_BYTES`]. Tensor data is never read here; its extents are
//! checked against the file length.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::types::{file_type_label, GgmlType};
use super::value::{Array, Value, ValueType};

/// `GGUF` in file order.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Default data alignment when `general.alignment` is absent
/// (`GGUF_DEFAULT_ALIGNMENT` in ggml's `gguf.h`).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Upper bound on the header (metadata and tensor infos). Real headers are a
/// few MiB (Gemma 3's 262k-token vocabulary: 6.5 MiB; SmolLM2: 1.7 MiB); 128
/// MiB leaves a wide margin while bounding what a hostile header can allocate.
pub const MAX_HEADER_BYTES: u64 = 128 << 20;

/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS` in `ggml.h`).
pub const MAX_DIMS: u32 = 4;

/// Deepest array nesting accepted. llama.cpp itself reads no nested arrays;
/// the bound keeps recursion on hostile input shallow.
const MAX_ARRAY_DEPTH: u32 = 8;

/// Elements pre-allocated for an array before its data is seen; the vector
/// grows only as elements are actually read.
const PREALLOC_ELEMENTS: u64 = 4096;

/// One tensor info: name, shape, type and data offset (relative to the start
/// of the data section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// `ne[0..n_dims]`, innermost first, as ggml stores them.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (`None` on overflow; never for a tensor read from a
    /// file, where the reader checked it).
    pub fn n_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Bytes of tensor data, without alignment padding (`None` for a ggml type
    /// skulk does not know).
    pub fn n_bytes(&self) -> Option<u64> {
        let block = self.ggml_type.block_size()?;
        let size = self.ggml_type.type_size()?;
        (self.n_elements()? / block).checked_mul(size)
    }
}

/// A parsed GGUF header. Holds no tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// The file (or URL) the header came from; used in every error.
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Length of the whole file.
    pub file_len: u64,
}

impl GgufHeader {
    /// Read the header of the GGUF file at `path` (buffered; tensor data is not
    /// read).
    pub fn read(path: &Path) -> Result<GgufHeader, GgufError> {
        let io = |op, error| GgufError::Io {
            op,
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        let len = file.metadata().map_err(|e| io("stat", e))?.len();
        GgufHeader::parse(BufReader::with_capacity(64 << 10, file), len, path)
    }

    /// Parse a header from `reader`, positioned at the start of a GGUF file of
    /// `len` bytes. `path` names the file in errors (it may be a URL).
    pub fn parse<R: Read>(reader: R, len: u64, path: &Path) -> Result<GgufHeader, GgufError> {
        Parser {
            r: reader,
            pos: 0,
            len,
            limit: len.min(MAX_HEADER_BYTES),
            path: path.to_path_buf(),
            what: String::new(),
        }
        .header()
    }

    /// The metadata keys held entirely in `prefix`, the first bytes of a
    /// GGUF file (e.g. read from a remote host), in file order: keys cut off
    /// by the end of the prefix, and the tensor infos, are left out. Errors
    /// other than running out of bytes are reported as for a whole file.
    pub fn parse_metadata_prefix(
        prefix: &[u8],
        path: &Path,
    ) -> Result<Vec<(String, Value)>, GgufError> {
        let mut p = Parser {
            r: prefix,
            pos: 0,
            // The real length is unknown: allow any header, and stop where
            // the prefix ends.
            len: MAX_HEADER_BYTES,
            limit: MAX_HEADER_BYTES,
            path: path.to_path_buf(),
            what: String::new(),
        };
        let (_, _, n_kv) = match p.preamble() {
            Ok(counts) => counts,
            Err(GgufError::Truncated { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut metadata = Vec::new();
        for i in 0..n_kv {
            match p.key_value(i) {
                Ok(kv) => metadata.push(kv),
                Err(GgufError::Truncated { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(metadata)
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor info named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn key_type(&self, key: &str, expected: &'static str, found: &Value) -> GgufError {
        GgufError::KeyType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: format!("a {} (`{found}`)", found.value_type().name()),
        }
    }

    fn required(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    /// An optional non-negative integer key.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.key_type(key, "a non-negative integer", v)),
        }
    }

    fn required_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.required(key)?;
        v.as_u64()
            .ok_or_else(|| self.key_type(key, "a non-negative integer", v))
    }

    /// `general.architecture` (e.g. `llama`, `gemma3`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        const KEY: &str = "general.architecture";
        let v = self.required(KEY)?;
        v.as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.key_type(KEY, "a non-empty string", v))
    }

    /// `<arch>.<suffix>`.
    pub fn arch_key(&self, suffix: &str) -> Result<String, GgufError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    /// `<arch>.block_count`: the number of transformer layers.
    pub fn block_count(&self) -> Result<u64, GgufError> {
        self.required_u64(&self.arch_key("block_count")?)
    }

    /// `<arch>.embedding_length`: the hidden size.
    pub fn embedding_length(&self) -> Result<u64, GgufError> {
        self.required_u64(&self.arch_key("embedding_length")?)
    }

    /// `<arch>.context_length`, when present.
    pub fn context_length(&self) -> Result<Option<u64>, GgufError> {
        self.get_u64(&self.arch_key("context_length")?)
    }

    /// `<arch>.attention.head_count_kv`, when present. Some architectures store
    /// one value per layer; then the largest (the KV cache is sized by it).
    pub fn head_count_kv(&self) -> Result<Option<u64>, GgufError> {
        let key = self.arch_key("attention.head_count_kv")?;
        match self.get(&key) {
            None => Ok(None),
            Some(Value::Array(a)) => match a.to_u64s() {
                Some(values) => Ok(values.into_iter().max()),
                None => Err(self.key_type(
                    &key,
                    "an integer or integer array",
                    &Value::Array(a.clone()),
                )),
            },
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.key_type(&key, "an integer or integer array", v)),
        }
    }

    /// `general.file_type`, when present.
    pub fn file_type(&self) -> Result<Option<u32>, GgufError> {
        const KEY: &str = "general.file_type";
        match self.get_u64(KEY)? {
            None => Ok(None),
            Some(v) => u32::try_from(v).map(Some).map_err(|_| {
                self.key_type(KEY, "a u32 file type", self.get(KEY).expect("present"))
            }),
        }
    }

    /// The quantisation label (`Q4_1`, `Q4_K_M`, `F16`): from
    /// `general.file_type` when it is a known id, otherwise the ggml type
    /// holding most bytes among the matrices (rank >= 2 tensors).
    pub fn quantization(&self) -> Result<Option<String>, GgufError> {
        if let Some(label) = self.file_type()?.and_then(file_type_label) {
            return Ok(Some(label.to_string()));
        }
        let mut by_type: Vec<(GgmlType, u64)> = Vec::new();
        for t in self.tensors.iter().filter(|t| t.dims.len() >= 2) {
            let bytes = t.n_bytes().unwrap_or(0);
            match by_type.iter_mut().find(|(ty, _)| *ty == t.ggml_type) {
                Some((_, total)) => *total += bytes,
                None => by_type.push((t.ggml_type, bytes)),
            }
        }
        Ok(by_type
            .into_iter()
            .max_by_key(|&(ty, bytes)| (bytes, std::cmp::Reverse(ty.0)))
            .and_then(|(ty, _)| ty.name())
            .map(str::to_string))
    }

    /// Bytes the file must have to hold every tensor's data: the end of the
    /// furthest tensor (the data offset for a file without tensors). The
    /// reader has checked that the file holds them.
    pub fn data_end(&self) -> u64 {
        data_end(&self.tensors, self.data_offset).map_or(self.data_offset, |(end, _)| end)
    }

    /// Sum of all tensors' data bytes (without padding; unknown types count 0).
    pub fn tensor_data_bytes(&self) -> u64 {
        self.tensors.iter().filter_map(TensorInfo::n_bytes).sum()
    }
}

/// The absolute end of the furthest tensor's data, and that tensor (`None`
/// without tensors). A tensor of a type skulk cannot size counts from its
/// start only.
fn data_end(tensors: &[TensorInfo], data_offset: u64) -> Option<(u64, &TensorInfo)> {
    tensors
        .iter()
        .map(|t| {
            let end = data_offset
                .saturating_add(t.offset)
                .saturating_add(t.n_bytes().unwrap_or(0));
            (end, t)
        })
        .max_by_key(|&(end, _)| end)
}

struct Parser<R> {
    r: R,
    pos: u64,
    len: u64,
    /// `min(len, MAX_HEADER_BYTES)`: header reads must stay below it.
    limit: u64,
    path: PathBuf,
    /// What is being read, for errors ("value of `llama.block_count`").
    what: String,
}

type Res<T> = Result<T, GgufError>;

impl<R: Read> Parser<R> {
    fn malformed(&self, offset: u64, what: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.clone(),
            offset,
            what,
        }
    }

    fn remaining(&self) -> u64 {
        self.limit - self.pos
    }

    /// Fail unless `n` more header bytes exist.
    fn need(&self, n: u64) -> Res<()> {
        if n <= self.remaining() {
            return Ok(());
        }
        if self.pos.saturating_add(n) <= self.len {
            return Err(self.malformed(
                self.pos,
                format!(
                    "{} would make the header larger than {} MiB",
                    self.what,
                    MAX_HEADER_BYTES >> 20
                ),
            ));
        }
        Err(GgufError::Truncated {
            path: self.path.clone(),
            what: self.what.clone(),
            offset: self.pos,
            need: n,
            len: self.len,
        })
    }

    fn fill(&mut self, buf: &mut [u8]) -> Res<()> {
        self.need(buf.len() as u64)?;
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            // The file shrank after its length was taken, or the stream ended
            // before its announced length.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(GgufError::Truncated {
                path: self.path.clone(),
                what: self.what.clone(),
                offset: self.pos,
                need: buf.len() as u64,
                len: self.len,
            }),
            Err(error) => Err(GgufError::Io {
                op: "read",
                path: self.path.clone(),
                error,
            }),
        }
    }

    fn array_of<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.array_of::<1>()?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.array_of()?))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.array_of()?))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.array_of()?))
    }

    fn bytes(&mut self) -> Res<Vec<u8>> {
        let n = self.u64()?;
        self.need(n)?;
        let mut v = vec![0u8; n as usize];
        self.fill(&mut v)?;
        Ok(v)
    }

    fn string(&mut self) -> Res<String> {
        let at = self.pos;
        let b = self.bytes()?;
        String::from_utf8(b).map_err(|_| self.malformed(at, format!("{} is not UTF-8", self.what)))
    }

    /// Read a count of elements of at least `min_size` bytes each, bounded by
    /// the header bytes left (a count the file cannot hold is reported as
    /// truncation: the two cannot be told apart).
    fn count(&mut self, min_size: u64, noun: &str) -> Res<u64> {
        let n = self.u64()?;
        let what = std::mem::take(&mut self.what);
        self.what = format!("{what} (`{n}` {noun})");
        self.need(n.saturating_mul(min_size))?;
        self.what = what;
        Ok(n)
    }

    /// Magic, version, tensor count and metadata count.
    fn preamble(&mut self) -> Res<(u32, u64, u64)> {
        self.what = "magic".into();
        if self.len < MAGIC.len() as u64 {
            return Err(GgufError::NotGguf {
                path: self.path.clone(),
                why: format!("it is only {} bytes long", self.len),
            });
        }
        let magic = self.array_of::<4>()?;
        if magic != MAGIC {
            return Err(GgufError::NotGguf {
                path: self.path.clone(),
                why: format!("it starts with `{}`, not `GGUF`", magic.escape_ascii()),
            });
        }
        self.what = "version".into();
        let version = self.u32()?;
        if version != 2 && version != 3 {
            let extra = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (this file looks big-endian)"
            } else if version == 1 {
                " (version 1 is the obsolete pre-2023 layout)"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion {
                path: self.path.clone(),
                version,
                extra,
            });
        }
        // A tensor info is at least a name length, n_dims, type and offset.
        self.what = "tensor count".into();
        let n_tensors = self.count(8 + 4 + 4 + 8, "tensors")?;
        // A key-value pair is at least a key length, a type and one byte.
        self.what = "metadata count".into();
        let n_kv = self.count(8 + 4 + 1, "metadata keys")?;
        Ok((version, n_tensors, n_kv))
    }

    /// Metadata pair `i`.
    fn key_value(&mut self, i: u64) -> Res<(String, Value)> {
        self.what = format!("metadata key {i}");
        let key = self.string()?;
        self.what = format!("type of `{key}`");
        let ty = self.value_type()?;
        self.what = format!("value of `{key}`");
        let value = self.value(ty, 0)?;
        Ok((key, value))
    }

    fn header(mut self) -> Res<GgufHeader> {
        let (version, n_tensors, n_kv) = self.preamble()?;
        let mut metadata = Vec::with_capacity(n_kv.min(PREALLOC_ELEMENTS) as usize);
        let mut seen = HashSet::new();
        for i in 0..n_kv {
            let at = self.pos;
            let (key, value) = self.key_value(i)?;
            if !seen.insert(key.clone()) {
                return Err(self.malformed(at, format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, v)) => {
                return Err(self.malformed(
                    self.pos,
                    format!(
                        "`general.alignment` is `{v}` ({}), expected a u32 power of two",
                        v.value_type().name()
                    ),
                ))
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOC_ELEMENTS) as usize);
        let mut names = HashSet::new();
        for i in 0..n_tensors {
            let at = self.pos;
            self.what = format!("name of tensor {i}");
            let name = self.string()?;
            if !names.insert(name.clone()) {
                return Err(self.malformed(at, format!("duplicate tensor `{name}`")));
            }
            self.what = format!("dimensions of tensor `{name}`");
            let n_dims = self.u32()?;
            if n_dims > MAX_DIMS {
                return Err(self.malformed(
                    at,
                    format!(
                        "tensor `{name}` has `{n_dims}` dimensions, more than ggml's {MAX_DIMS}"
                    ),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.u64()?);
            }
            self.what = format!("type of tensor `{name}`");
            let ggml_type = GgmlType(self.u32()?);
            self.what = format!("offset of tensor `{name}`");
            let offset = self.u64()?;
            let info = TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            };
            self.check_tensor_shape(&info, at)?;
            tensors.push(info);
        }

        let data_offset = self.pos.next_multiple_of(alignment);
        for t in &tensors {
            self.check_tensor_alignment(t, data_offset, alignment)?;
        }
        if let Some((end, t)) = data_end(&tensors, data_offset).filter(|&(end, _)| end > self.len) {
            return Err(GgufError::DataTruncated {
                path: self.path,
                tensor: t.name.clone(),
                end,
                len: self.len,
            });
        }

        Ok(GgufHeader {
            path: self.path,
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_len: self.len,
        })
    }

    fn check_tensor_shape(&self, t: &TensorInfo, at: u64) -> Res<()> {
        // ggml holds dimensions and element counts as int64_t.
        let elements = t
            .n_elements()
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                self.malformed(
                    at,
                    format!("tensor `{}` has shape `{:?}`, too large", t.name, t.dims),
                )
            })?;
        if let Some(block) = t.ggml_type.block_size() {
            let ne0 = t.dims.first().copied().unwrap_or(1);
            if ne0 % block != 0 {
                return Err(self.malformed(
                    at,
                    format!(
                        "tensor `{}` has rows of `{ne0}` elements, not a multiple of {}'s block of {block}",
                        t.name, t.ggml_type
                    ),
                ));
            }
        }
        debug_assert!(elements <= i64::MAX as u64);
        Ok(())
    }

    fn check_tensor_alignment(&self, t: &TensorInfo, data_offset: u64, alignment: u64) -> Res<()> {
        if t.offset % alignment != 0 {
            return Err(self.malformed(
                data_offset,
                format!(
                    "tensor `{}` has data offset `{}`, not a multiple of the alignment {alignment}",
                    t.name, t.offset
                ),
            ));
        }
        Ok(())
    }

    fn value_type(&mut self) -> Res<ValueType> {
        let at = self.pos;
        let raw = self.u32()?;
        ValueType::from_u32(raw).ok_or_else(|| {
            self.malformed(
                at,
                format!("{} is `{raw}`, not a GGUF value type", self.what),
            )
        })
    }

    fn value(&mut self, ty: ValueType, depth: u32) -> Res<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8()?),
            ValueType::I8 => Value::I8(self.u8()? as i8),
            ValueType::U16 => Value::U16(self.u16()?),
            ValueType::I16 => Value::I16(self.u16()? as i16),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(self.u32()? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32()?)),
            ValueType::Bool => Value::Bool(self.u8()? != 0),
            ValueType::Str => Value::Str(self.bytes()?),
            ValueType::Array => Value::Array(self.array(depth)?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(self.u64()? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64()?)),
        })
    }

    fn elements<T>(&mut self, n: u64, mut one: impl FnMut(&mut Self) -> Res<T>) -> Res<Vec<T>> {
        let mut v = Vec::with_capacity(n.min(PREALLOC_ELEMENTS) as usize);
        for _ in 0..n {
            v.push(one(self)?);
        }
        Ok(v)
    }

    fn array(&mut self, depth: u32) -> Res<Array> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.malformed(
                at,
                format!("{} nests arrays deeper than {MAX_ARRAY_DEPTH}", self.what),
            ));
        }
        let ty = self.value_type()?;
        let n = self.count(ty.min_encoded_size(), "array elements")?;
        Ok(match ty {
            ValueType::U8 => {
                let mut v = vec![0u8; n as usize];
                self.fill(&mut v)?;
                Array::U8(v)
            }
            ValueType::I8 => Array::I8(self.elements(n, |p| Ok(p.u8()? as i8))?),
            ValueType::U16 => Array::U16(self.elements(n, Self::u16)?),
            ValueType::I16 => Array::I16(self.elements(n, |p| Ok(p.u16()? as i16))?),
            ValueType::U32 => Array::U32(self.elements(n, Self::u32)?),
            ValueType::I32 => Array::I32(self.elements(n, |p| Ok(p.u32()? as i32))?),
            ValueType::F32 => Array::F32(self.elements(n, |p| Ok(f32::from_bits(p.u32()?)))?),
            ValueType::Bool => Array::Bool(self.elements(n, |p| Ok(p.u8()? != 0))?),
            ValueType::Str => Array::Str(self.elements(n, Self::bytes)?),
            ValueType::Array => Array::Array(self.elements(n, |p| p.array(depth + 1))?),
            ValueType::U64 => Array::U64(self.elements(n, Self::u64)?),
            ValueType::I64 => Array::I64(self.elements(n, |p| Ok(p.u64()? as i64))?),
            ValueType::F64 => Array::F64(self.elements(n, |p| Ok(f64::from_bits(p.u64()?)))?),
        })
    }
}
