//! Backend tags, and what skulk's engine can run.
//!
//! A backend tag (`docs/architecture.md`, "Backend tags") is `<engine>` or
//! `<engine>-<compute>`: cards list the tags a model may run on, inventories
//! the tags a host runs, a plan the tag each rank resolved to. They stay
//! strings on the wire (the Python Skulk's format); [`BackendTag`] is the one
//! place that parses and prints them, so the vocabulary and the message for
//! an unknown tag are written once.
//!
//! Invariant: [`check_runnable`] is the one answer to "can skulk's engine
//! run this rank?", asked by `apply`'s deployment (before anything starts on
//! a host) and by `run-shard` (before the rank loads anything).

use std::fmt;
use std::str::FromStr;

use crate::plan::document::RankSpec;
use crate::plan::{InstanceKind, Sharding};

/// The engine of a backend tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Engine {
    /// Apple's MLX (the Python Skulk's engine).
    Mlx,
    /// llama.cpp in-process: skulk's engine.
    LlamaCpp,
    /// llama.cpp's server, served by the Python Skulk (the seed's
    /// `servedSpec*` fields).
    LlamaServer,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Mlx, Engine::LlamaCpp, Engine::LlamaServer];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mlx => "mlx",
            Engine::LlamaCpp => "llama_cpp",
            Engine::LlamaServer => "llama_server",
        }
    }
}

/// The compute kind of a backend tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compute {
    Metal,
    Vulkan,
    Rocm,
    Cuda,
    Cpu,
}

impl Compute {
    pub const ALL: [Compute; 5] = [
        Compute::Metal,
        Compute::Vulkan,
        Compute::Rocm,
        Compute::Cuda,
        Compute::Cpu,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compute::Metal => "metal",
            Compute::Vulkan => "vulkan",
            Compute::Rocm => "rocm",
            Compute::Cuda => "cuda",
            Compute::Cpu => "cpu",
        }
    }

    /// Whether this compute is a GPU.
    pub fn is_gpu(self) -> bool {
        self != Compute::Cpu
    }
}

/// The engine skulk's ranks run.
pub const SKULK_ENGINE: Engine = Engine::LlamaCpp;

/// A backend tag: `<engine>` or `<engine>-<compute>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendTag {
    pub engine: Engine,
    pub compute: Option<Compute>,
}

impl BackendTag {
    pub const fn new(engine: Engine, compute: Compute) -> BackendTag {
        BackendTag {
            engine,
            compute: Some(compute),
        }
    }

    /// Whether the tag names a GPU: a GPU compute, or bare `mlx` (MLX runs
    /// on Apple's GPU).
    pub fn is_gpu(self) -> bool {
        match self.compute {
            Some(compute) => compute.is_gpu(),
            None => self.engine == Engine::Mlx,
        }
    }
}

impl fmt::Display for BackendTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.engine.as_str())?;
        if let Some(compute) = self.compute {
            write!(f, "-{}", compute.as_str())?;
        }
        Ok(())
    }
}

/// A string that is not a backend tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTag(pub String);

impl fmt::Display for UnknownTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[&str]| names.join(", ");
        write!(
            f,
            "unknown backend tag `{}`; expected `<engine>` or `<engine>-<compute>` with engine one of {} and compute one of {}",
            self.0,
            list(&Engine::ALL.map(Engine::as_str)),
            list(&Compute::ALL.map(Compute::as_str)),
        )
    }
}

impl std::error::Error for UnknownTag {}

impl FromStr for BackendTag {
    type Err = UnknownTag;

    fn from_str(tag: &str) -> Result<BackendTag, UnknownTag> {
        let unknown = || UnknownTag(tag.to_owned());
        let (engine, compute) = match tag.split_once('-') {
            None => (tag, None),
            Some((engine, compute)) => (engine, Some(compute)),
        };
        let engine = Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == engine)
            .ok_or_else(unknown)?;
        let compute = match compute {
            None => None,
            Some(c) => Some(
                Compute::ALL
                    .into_iter()
                    .find(|k| k.as_str() == c)
                    .ok_or_else(unknown)?,
            ),
        };
        Ok(BackendTag { engine, compute })
    }
}

/// The engine part of a tag as written (`llama_cpp` of `llama_cpp-cuda`),
/// known or not.
pub fn engine_name(tag: &str) -> &str {
    tag.split_once('-').map_or(tag, |(engine, _)| engine)
}

/// Why skulk's engine cannot run a rank of a plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotRunnable {
    #[error("a jaccl instance (all-to-all RDMA, for MLX clusters) cannot run on skulk's engine, which forms a TCP ring\n\nhint: plan with `--instance ring`, or POST the plan to a Python Skulk cluster's `/instance`")]
    Jaccl,
    #[error("tensor shards cannot run on skulk's engine, which runs layer ranges (pipeline shards)\n\nhint: plan with `--sharding pipeline`")]
    Tensor,
    #[error("engine `{0}` cannot run here: skulk's engine is `llama_cpp`\n\nhint: plan with a card and inventory that have `llama_cpp` backends")]
    Engine(String),
    #[error("backend `{0}` cannot run on skulk's engine, which runs `llama_cpp` backends\n\nhint: give the card and the host a `llama_cpp` backend and plan again")]
    Backend(String),
    #[error("the card of `{0}` names no `ggufFile`, and skulk's engine loads GGUF files")]
    NotGguf(String),
}

/// Whether skulk's engine can run `spec`: a ring instance of pipeline
/// shards of a GGUF model, planned for the `llama_cpp` engine and resolved
/// to one of its backends. Returns the GGUF file the rank loads (the card's
/// `ggufFile`).
pub fn check_runnable(spec: &RankSpec) -> Result<&str, NotRunnable> {
    if spec.instance == InstanceKind::Jaccl {
        return Err(NotRunnable::Jaccl);
    }
    if spec.sharding == Sharding::Tensor {
        return Err(NotRunnable::Tensor);
    }
    if spec.engine != SKULK_ENGINE.as_str() {
        return Err(NotRunnable::Engine(spec.engine.clone()));
    }
    if let Some(backend) = &spec.resolved_backend {
        let runs = backend
            .parse::<BackendTag>()
            .is_ok_and(|tag| tag.engine == SKULK_ENGINE);
        if !runs {
            return Err(NotRunnable::Backend(backend.clone()));
        }
    }
    spec.gguf_file
        .as_deref()
        .ok_or_else(|| NotRunnable::NotGguf(spec.model_card.model_id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_print_back() {
        for tag in [
            "mlx",
            "mlx-metal",
            "llama_cpp",
            "llama_cpp-cuda",
            "llama_server-vulkan",
        ] {
            assert_eq!(tag.parse::<BackendTag>().unwrap().to_string(), tag);
        }
        for engine in Engine::ALL {
            for compute in Compute::ALL {
                let tag = BackendTag::new(engine, compute);
                assert_eq!(tag.to_string().parse::<BackendTag>(), Ok(tag));
            }
        }
        for bad in [
            "llama_cpp-tpu",
            "onnx",
            "mlx-",
            "",
            "-cpu",
            "llama_cpp-cpu-x",
        ] {
            assert_eq!(
                bad.parse::<BackendTag>(),
                Err(UnknownTag(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            UnknownTag("onnx".into()).to_string(),
            "unknown backend tag `onnx`; expected `<engine>` or `<engine>-<compute>` with engine one of mlx, llama_cpp, llama_server and compute one of metal, vulkan, rocm, cuda, cpu"
        );
    }

    #[test]
    fn gpu_tags() {
        let gpu = |t: &str| t.parse::<BackendTag>().unwrap().is_gpu();
        assert!(gpu("mlx") && gpu("mlx-metal") && gpu("llama_cpp-cuda"));
        assert!(!gpu("llama_cpp-cpu") && !gpu("llama_cpp") && !gpu("mlx-cpu"));
        assert_eq!(engine_name("llama_cpp-cuda"), "llama_cpp");
        assert_eq!(engine_name("mlx"), "mlx");
    }
}
