//! The GGUF writer: serialises a header (always version 3, little-endian) and
//! lays tensor data out the way ggml's `gguf_write_to_file` does, each tensor
//! at the next multiple of the alignment, in tensor-info order, and padded to
//! the alignment after it. llama.cpp's loader checks that layout (each
//! tensor's offset must equal the padded end of the one before), so every
//! file skulk writes follows it.

use std::io::{self, Write};
use std::path::Path;

use super::read::{TensorInfo, DEFAULT_ALIGNMENT, MAGIC};
use super::types::GgmlType;
use super::value::{Array, Value};

/// The version skulk writes. v3 only added big-endian files to v2, so a v3
/// little-endian file reads as a v2 one everywhere that matters.
pub const WRITE_VERSION: u32 = 3;

/// A writer that counts the bytes passed through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The alignment a file with `metadata` uses: `general.alignment` when it is a
/// u32 power of two, else the default 32.
pub fn alignment_of(metadata: &[(String, Value)]) -> u64 {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        _ => DEFAULT_ALIGNMENT,
    }
}

/// Assign each tensor's offset in order, each at the padded end of the one
/// before. Returns the data section's size (padded), or the index of a tensor
/// whose ggml type has no known size.
pub fn layout_offsets(tensors: &mut [TensorInfo], alignment: u64) -> Result<u64, usize> {
    let mut offset = 0u64;
    for (i, t) in tensors.iter_mut().enumerate() {
        let size = t.n_bytes().ok_or(i)?;
        t.offset = offset;
        offset = (offset + size).next_multiple_of(alignment);
    }
    Ok(offset)
}

/// Zero bytes from `pos` to the next multiple of `alignment`.
pub fn write_padding<W: Write>(w: &mut W, pos: u64, alignment: u64) -> io::Result<u64> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut pad = pos.next_multiple_of(alignment) - pos;
    let n = pad;
    while pad > 0 {
        let k = pad.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        pad -= k as u64;
    }
    Ok(n)
}

fn write_str<W: Write>(w: &mut W, s: &[u8]) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s)
}

fn write_payload<W: Write>(w: &mut W, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::Str(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}

fn write_array<W: Write>(w: &mut W, a: &Array) -> io::Result<()> {
    w.write_all(&(a.element_type() as u32).to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    macro_rules! le {
        ($v:expr) => {{
            for x in $v {
                w.write_all(&x.to_le_bytes())?;
            }
            Ok(())
        }};
    }
    match a {
        Array::U8(v) => w.write_all(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::Bool(v) => {
            for x in v {
                w.write_all(&[u8::from(*x)])?;
            }
            Ok(())
        }
        Array::Str(v) => {
            for s in v {
                write_str(w, s)?;
            }
            Ok(())
        }
        Array::Array(v) => {
            for inner in v {
                write_array(w, inner)?;
            }
            Ok(())
        }
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
    }
}

/// Write a header: magic, version, counts, metadata, tensor infos (with the
/// offsets they carry) and the padding up to the data section. Returns the
/// bytes written, which is the data section's offset.
pub fn write_header<W: Write>(
    w: W,
    metadata: &[(String, Value)],
    tensors: &[TensorInfo],
) -> io::Result<u64> {
    let alignment = alignment_of(metadata);
    let mut w = CountingWriter { inner: w, count: 0 };
    w.write_all(&MAGIC)?;
    w.write_all(&WRITE_VERSION.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_str(&mut w, key.as_bytes())?;
        w.write_all(&(value.value_type() as u32).to_le_bytes())?;
        write_payload(&mut w, value)?;
    }
    for t in tensors {
        write_str(&mut w, t.name.as_bytes())?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            w.write_all(&d.to_le_bytes())?;
        }
        w.write_all(&t.ggml_type.0.to_le_bytes())?;
        w.write_all(&t.offset.to_le_bytes())?;
    }
    let pos = w.count;
    write_padding(&mut w, pos, alignment)?;
    w.flush()?;
    Ok(w.count)
}

/// Builds a whole GGUF file in memory: synthetic models for tests and
/// fixtures. Real models go through [`write_header`] and streamed data.
#[derive(Debug, Clone, Default)]
pub struct GgufBuilder {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<(TensorInfo, Vec<u8>)>,
}

impl GgufBuilder {
    pub fn new() -> GgufBuilder {
        GgufBuilder::default()
    }

    pub fn kv(mut self, key: &str, value: Value) -> GgufBuilder {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Add a tensor. Panics when `data` is not exactly the tensor's size.
    pub fn tensor(
        mut self,
        name: &str,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> GgufBuilder {
        let info = TensorInfo {
            name: name.to_string(),
            dims: dims.to_vec(),
            ggml_type,
            offset: 0,
        };
        assert_eq!(
            info.n_bytes(),
            Some(data.len() as u64),
            "data size of tensor `{name}`"
        );
        self.tensors.push((info, data));
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = alignment_of(&self.metadata);
        let mut infos: Vec<TensorInfo> = self.tensors.iter().map(|(t, _)| t.clone()).collect();
        layout_offsets(&mut infos, alignment).expect("builder tensors have known types");
        let mut out = Vec::new();
        write_header(&mut out, &self.metadata, &infos).expect("writing to memory");
        for (_, data) in &self.tensors {
            out.extend_from_slice(data);
            let pos = out.len() as u64;
            write_padding(&mut out, pos, alignment).expect("writing to memory");
        }
        out
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}
