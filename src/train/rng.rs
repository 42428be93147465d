//! Random draws shared by weight initialisation ([`super::init`], [`super::head`]) and
//! augmentation ([`super::augment`]), kept apart so that neither imports the other.

use rand::Rng;

/// One standard-normal sample (Box–Muller; rand's distributions crate is not needed for this).
pub fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
