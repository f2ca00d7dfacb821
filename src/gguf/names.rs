//! GGUF file names: the `.gguf` extension and the names llama.cpp's
//! `gguf-split` gives the parts of a split model. Used by card creation,
//! fetching, `run-shard`'s model check and the slicer.

/// A GGUF file name of a split model: `<base>-<index>-of-<count>.gguf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName<'a> {
    /// Everything before `-NNNNN-of-MMMMM.gguf` (directories included).
    pub base: &'a str,
    pub index: u32,
    pub count: u32,
    /// Digits of the index as written (llama.cpp's `gguf-split` uses 5).
    pub width: usize,
    /// The count as written.
    count_text: &'a str,
}

impl SplitName<'_> {
    /// The name of part `index` of this split model.
    pub fn part(&self, index: u32) -> String {
        format!(
            "{}-{index:0w$}-of-{}.gguf",
            self.base,
            self.count_text,
            w = self.width
        )
    }
}

/// Parse `X-NNNNN-of-MMMMM.gguf` (the last three `-` separated fields are
/// digits, `of`, digits; `docs/architecture.md`, "GGUF file names"). Case of
/// `.gguf` is ignored.
pub fn split_name(name: &str) -> Option<SplitName<'_>> {
    let stem = strip_gguf(name)?;
    let mut fields = stem.rsplitn(4, '-');
    let (count_text, of, index_text, base) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if of != "of" || !digits(index_text) || !digits(count_text) || base.is_empty() {
        return None;
    }
    let (index, count): (u32, u32) = (index_text.parse().ok()?, count_text.parse().ok()?);
    if index == 0 || index > count {
        return None;
    }
    Some(SplitName {
        base,
        index,
        count,
        width: index_text.len(),
        count_text,
    })
}

/// The name without its `.gguf` extension (any case), or `None`.
pub(crate) fn strip_gguf(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(5)?;
    name.is_char_boundary(cut)
        .then(|| name.split_at(cut))
        .filter(|(_, ext)| ext.eq_ignore_ascii_case(".gguf"))
        .map(|(stem, _)| stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        let s = split_name("dir/Model-Q4_K_M-00002-of-00003.gguf").unwrap();
        assert_eq!(
            (s.base, s.index, s.count, s.width),
            ("dir/Model-Q4_K_M", 2, 3, 5)
        );
        assert_eq!(s.part(1), "dir/Model-Q4_K_M-00001-of-00003.gguf");
        assert_eq!(
            split_name("m-1-of-2.GGUF").unwrap().part(2),
            "m-2-of-2.gguf"
        );
        // The one rule (preflight's size check and `run-shard` alike): any
        // digit count, so a hand-renamed part is still a part.
        let s = split_name("x-0001-of-00002.gguf").unwrap();
        assert_eq!((s.index, s.count, s.width), (1, 2, 4));
        for not in [
            "m.gguf",
            "m-00001-of-00002.bin",
            "-00001-of-00002.gguf",
            "m-x-of-2.gguf",
            "m-3-of-2.gguf",
            "m-0-of-2.gguf",
            "m-1-from-2.gguf",
            "é.gguf",
        ] {
            assert_eq!(split_name(not), None, "{not}");
        }
    }
}
