//! dolg: image retrieval with DOLG (Yang et al., ICCV 2021).
//!
//! Modules follow the data path, each depending only on those above it:
//! [`decode`] → [`preprocess`] → [`checkpoint`] / [`model`] → [`descriptors`] → [`eval`] / [`index`] → [`train`].

pub mod decode;
pub mod preprocess;
pub mod checkpoint;
pub mod model;
pub mod pretrained;
pub mod descriptors;
pub mod runtime;
pub mod atomic_file;
pub mod eval;
pub mod index;
pub mod train;
