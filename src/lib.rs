//! dolg: image retrieval with DOLG (Yang et al., ICCV 2021).
//!
//! Modules follow the data path, each depending only on those above it:
//! [`decode`] → [`preprocess`] → [`checkpoint`] / [`model`] → [`descriptors`] → [`eval`] / [`index`] → [`train`].

pub mod atomic_file;
pub mod checkpoint;
pub mod decode;
pub mod descriptors;
pub mod eval;
pub mod index;
pub mod model;
pub mod preprocess;
pub mod pretrained;
pub mod runtime;
pub mod train;
