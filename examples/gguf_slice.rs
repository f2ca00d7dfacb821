//! Cut a layer range out of a GGUF file, for measuring the slicer's memory
//! (`/usr/bin/time -v`), or make a large sparse synthetic model to cut.
//!
//!     cargo run --example gguf_slice -- SRC DST START END
//!     cargo run --example gguf_slice -- synth DST LAYERS MIB_PER_LAYER

use std::fs::OpenOptions;
use std::path::Path;

use skulk::gguf::{layout_offsets, slice_layers, write_header, GgmlType, TensorInfo, Value};

fn synth(dst: &Path, layers: u32, mib_per_layer: u64) -> anyhow::Result<()> {
    let arch = "llama";
    let metadata = vec![
        ("general.architecture".to_string(), Value::string(arch)),
        (format!("{arch}.block_count"), Value::U32(layers)),
        (format!("{arch}.embedding_length"), Value::U32(1024)),
    ];
    // F32 rows of 1024 elements: 4 KiB each.
    let rows = mib_per_layer * 256;
    let mut tensors = vec![TensorInfo {
        name: "token_embd.weight".into(),
        dims: vec![1024, 1024],
        ggml_type: GgmlType::F32,
        offset: 0,
    }];
    for l in 0..layers {
        tensors.push(TensorInfo {
            name: format!("blk.{l}.ffn_up.weight"),
            dims: vec![1024, rows],
            ggml_type: GgmlType::F32,
            offset: 0,
        });
    }
    let data = layout_offsets(&mut tensors, 32).expect("F32");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)?;
    let header = write_header(&file, &metadata, &tensors)?;
    // Sparse: the data section reads as zeros and takes no disk space.
    file.set_len(header + data)?;
    println!("wrote {} ({} bytes)", dst.display(), header + data);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dst, layers, mib] if cmd == "synth" => {
            synth(Path::new(dst), layers.parse()?, mib.parse()?)
        }
        [src, dst, start, end] => {
            let report =
                slice_layers(Path::new(src), Path::new(dst), start.parse()?, end.parse()?)?;
            println!("{report:?}");
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: gguf_slice SRC DST START END | gguf_slice synth DST LAYERS MIB_PER_LAYER"
        ),
    }
}
