//! ggml tensor types and llama.cpp file types: the two numeric vocabularies a
//! GGUF header uses, with the block geometry needed to size tensor data.
//!
//! Source: ggml `ggml.h` (`enum ggml_type`), ggml `ggml.c` (`type_traits`:
//! `blck_size`, `type_size`) and llama.cpp `llama.h` (`enum llama_ftype`), as
//! mirrored by gguf-py 0.19 (`GGML_QUANT_SIZES`, `LlamaFileType`). Removed ids
//! (Q4_2, Q4_3, the Q4_0_4_4 family, ...) are deliberately absent: a file that
//! uses them cannot be loaded by a current llama.cpp either.

use std::fmt;

/// A ggml tensor type id as stored in a tensor info (`u32`). Unknown ids are
/// kept (a header can still be read); only sizing them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

/// (id, name, elements per block, bytes per block).
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const BF16: GgmlType = GgmlType(30);

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        GGML_TYPES.iter().find(|e| e.0 == self.0)
    }

    /// The ggml name (`Q4_K`), or `None` for an id skulk does not know.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|e| e.1)
    }

    /// Elements per quantisation block.
    pub fn block_size(self) -> Option<u64> {
        self.entry().map(|e| e.2)
    }

    /// Bytes per quantisation block.
    pub fn type_size(self) -> Option<u64> {
        self.entry().map(|e| e.3)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "type {}", self.0),
        }
    }
}

/// llama.cpp marks a file type it inferred rather than read with this bit
/// (`LLAMA_FTYPE_GUESSED` in `llama.h`).
const FILE_TYPE_GUESSED: u32 = 1024;

/// `general.file_type` ids (`enum llama_ftype`) and the quantisation labels
/// used in model repositories (`MOSTLY_Q4_K_M` is written `Q4_K_M`).
const FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
    (39, "NVFP4"),
    (40, "Q1_0"),
];

/// The quantisation label of a `general.file_type` value, or `None` when the
/// id is unknown.
pub fn file_type_label(file_type: u32) -> Option<&'static str> {
    let id = file_type & !FILE_TYPE_GUESSED;
    FILE_TYPES.iter().find(|e| e.0 == id).map(|e| e.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_have_geometry() {
        assert_eq!(GgmlType::Q4_1.block_size(), Some(32));
        assert_eq!(GgmlType::Q4_1.type_size(), Some(20));
        assert_eq!(GgmlType::Q4_K.type_size(), Some(144));
        assert_eq!(GgmlType(4).name(), None);
        assert_eq!(GgmlType(4).to_string(), "type 4");
        assert_eq!(GgmlType::Q6_K.to_string(), "Q6_K");
    }

    #[test]
    fn file_type_labels() {
        assert_eq!(file_type_label(3), Some("Q4_1"));
        assert_eq!(file_type_label(15), Some("Q4_K_M"));
        assert_eq!(file_type_label(15 | FILE_TYPE_GUESSED), Some("Q4_K_M"));
        assert_eq!(file_type_label(4), None);
    }
}
