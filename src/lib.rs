//! skulk: run one large language model split across several machines.
//!
//! Data flows one way: card and inventory files are read at the edge (`io`),
//! parsed into types that cannot be invalid (`card`, `inventory`), placed by a
//! pure planner (`plan`), rendered (`render`), and executed (`exec`) by
//! starting `run-shard` ranks (`engine`, `ring`, `api`).

pub mod api;
pub mod card;
pub mod cardgen;
pub mod cli;
pub mod engine;
pub mod exec;
pub mod fetch;
pub mod gguf;
pub mod hub;
pub mod inventory;
pub mod load;
pub mod model_add;
pub mod output;
pub mod plan;
pub mod ring;
pub mod run_shard;
pub mod schema;
pub mod settings;
pub mod shard;
pub mod synth;
pub mod validate;
