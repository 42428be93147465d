//! The hand-tuned CPU engine, apart from the network definitions that use it: the ResNet trunk's
//! native inference path ([`cpu_resnet`]), its AVX-512 implicit-GEMM convolution ([`conv_gemm`])
//! and the one safe wrapper every other matrix product goes through (`gemm`). Foundations: no
//! module of the crate is imported here; `model`, `index`, `collection` and `spatial` call in.

pub mod conv_gemm;
pub mod cpu_resnet;
pub(crate) mod gemm;
