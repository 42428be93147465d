//! dolg: image retrieval with DOLG (Yang et al., ICCV 2021).
//!
//! Modules follow the data path in layers, each importing only its own layer and those below
//! (ARCHITECTURE.md has the table; a unit test checks it):
//! [`atomic_file`], [`kernels`], `linalg`, [`runtime`] → [`decode`], [`inputs`], [`preprocess`], [`checkpoint`],
//! [`pretrained`] → [`model`] → [`descriptors`], [`spatial`], [`rerank`] → [`spec`], [`shards`] →
//! [`index`] → [`collection`] → [`eval`], `train` → [`Error`] and `serve` (the boundary). [`Error`]
//! wraps every module's error at the crate boundary; `serve` and `train` are default-on features.
//!
//! Start with [`collection::Collection`]: a searchable photo collection (create, add photos,
//! search by photo or vector, remove, export).

// Every public item is documented: `cargo doc` is the API reference.
#![warn(missing_docs)]

#[cfg(test)]
mod architecture;
pub mod atomic_file;
pub mod checkpoint;
pub mod collection;
pub mod decode;
pub mod descriptors;
mod error;
pub mod eval;
pub(crate) mod failpoints;
pub mod index;
pub mod inputs;
pub mod kernels;
pub(crate) mod linalg;
pub mod metadata;
pub mod model;
pub mod preprocess;
pub mod pretrained;
pub mod rerank;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod serve;
pub mod shards;
pub mod spatial;
pub mod spec;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
