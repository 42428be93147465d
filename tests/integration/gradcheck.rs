//! Finite-difference checks (float64, central differences) of the gradients that autodiff gives
//! for the pieces of DOLG with hand-written forward code: the GeM exponent `p`, the local
//! branch's self-attention, and the orthogonal fusion. Each loss is `Σ w ⊙ output` with a fixed
//! random `w`, so every output element contributes to the gradient.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};
use dolg::model::fusion::{fuse_local, Fusion};
use dolg::model::gem::GeM;
use dolg::model::layers::ConvBn;
use dolg::model::local_branch::LocalBranch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dev() -> Device {
    Device::flex().autodiff()
}

fn t<const D: usize>(v: &[f64], shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), (&dev(), DType::F64))
}

fn host<const D: usize>(x: Tensor<D>) -> Vec<f64> {
    x.into_data().convert::<f64>().try_into_vec::<f64>().unwrap()
}

fn rand_vec(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Compare the analytic gradient with central differences of `f` at `x0` on up to `max` coordinates.
fn check(name: &str, x0: &[f64], analytic: &[f64], f: impl Fn(&[f64]) -> f64, max: usize) {
    assert_eq!(x0.len(), analytic.len());
    let h = 1e-6;
    let step = (x0.len() / max).max(1);
    let mut worst: f64 = 0.0;
    for i in (0..x0.len()).step_by(step) {
        let mut xp = x0.to_vec();
        let mut xm = x0.to_vec();
        xp[i] += h;
        xm[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        let err = (fd - analytic[i]).abs() / (1e-6 + fd.abs().max(analytic[i].abs()));
        worst = worst.max(err);
        assert!(err < 1e-5, "{name}[{i}]: finite difference {fd:e} vs autodiff {:e}", analytic[i]);
    }
    println!("{name}: worst relative error {worst:.2e}");
}

#[test]
fn gem_exponent_and_input_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let shape = [2, 3, 4, 5];
    let x0 = rand_vec(&mut rng, 120, 0.01, 3.0);
    let w = rand_vec(&mut rng, 6, -1.0, 1.0);
    let loss = |x: &[f64], p: f64| -> Tensor<1> {
        let gem = GeM { p: Param::from_tensor(t(&[p], [1])) };
        (gem.forward(t(x, shape)) * t(&w, [2, 3])).sum()
    };
    let p0 = 2.75;
    // Gradient w.r.t. p.
    let gem = GeM { p: Param::from_tensor(t(&[p0], [1]).require_grad()) };
    let l = (gem.forward(t(&x0, shape)) * t(&w, [2, 3])).sum();
    let g = l.backward();
    let gp = host(gem.p.val().grad(&g).unwrap());
    check("GeM dL/dp", &[p0], &gp, |p| host(loss(&x0, p[0]))[0], 1);
    // Gradient w.r.t. the feature map.
    let x = t(&x0, shape).require_grad();
    let gem = GeM { p: Param::from_tensor(t(&[p0], [1])) };
    let g = (gem.forward(x.clone()) * t(&w, [2, 3])).sum().backward();
    check("GeM dL/dx", &x0, &host(x.grad(&g).unwrap()), |x| host(loss(x, p0))[0], 40);
}

fn conv1x1(cin: usize, cout: usize, w: &[f64], b: &[f64]) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [1, 1]).init(&dev());
    c.weight = Param::from_tensor(t(w, [cout, cin, 1, 1]));
    c.bias = Some(Param::from_tensor(t(b, [cout])));
    c
}

#[test]
fn self_attention_gradients() {
    // fl = softplus(conv2(relu(conv1(f3)))) · conv1(f3)/‖conv1(f3)‖, then the loss.
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (cin, dim, h, wd) = (5, 4, 3, 3);
    let f3 = rand_vec(&mut rng, cin * h * wd, -1.0, 1.0);
    let w1 = rand_vec(&mut rng, dim * cin, -0.6, 0.6);
    let b1 = rand_vec(&mut rng, dim, -0.1, 0.1);
    let w2 = rand_vec(&mut rng, dim, -1.0, 1.0);
    let b2 = rand_vec(&mut rng, 1, -0.2, 0.2);
    let wl = rand_vec(&mut rng, dim * h * wd, -1.0, 1.0);
    let branch = |w1: &[f64], w2: &[f64]| LocalBranch {
        aspp: None,
        conv1: ConvBn { conv: conv1x1(cin, dim, w1, &b1), bn: None },
        conv2: Some(conv1x1(dim, 1, w2, &b2)),
    };
    let loss = |lb: &LocalBranch, x: Tensor<4>| (lb.forward(x).fl * t(&wl, [1, dim, h, wd])).sum();
    let lb = branch(&w1, &w2);
    let x = t(&f3, [1, cin, h, wd]).require_grad();
    let g = loss(&lb, x.clone()).backward();
    let g_w2 = host(lb.conv2.as_ref().unwrap().weight.val().grad(&g).unwrap());
    let g_w1 = host(lb.conv1.conv.weight.val().grad(&g).unwrap());
    let g_x = host(x.grad(&g).unwrap());
    let f_of = |w1: &[f64], w2: &[f64], x: &[f64]| host(loss(&branch(w1, w2), t(x, [1, cin, h, wd])))[0];
    check("attention dL/d conv2.weight", &w2, &g_w2, |v| f_of(&w1, v, &f3), 4);
    check("attention dL/d conv1.weight", &w1, &g_w1, |v| f_of(v, &w2, &f3), 20);
    check("attention dL/d f3", &f3, &g_x, |v| f_of(&w1, &w2, v), 45);
}

#[test]
fn orthogonal_fusion_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (b, c, h, w) = (2, 6, 3, 2);
    let fg0 = rand_vec(&mut rng, b * c, -1.0, 1.0);
    let fl0 = rand_vec(&mut rng, b * c * h * w, -1.0, 1.0);
    let wo = rand_vec(&mut rng, b * c, -1.0, 1.0);
    for fusion in [Fusion::Orthogonal, Fusion::Hadamard] {
        let loss = |fg: Tensor<2>, fl: Tensor<4>| (fuse_local(fusion, fg, fl) * t(&wo, [b, c])).sum();
        let fg = t(&fg0, [b, c]).require_grad();
        let fl = t(&fl0, [b, c, h, w]).require_grad();
        let g = loss(fg.clone(), fl.clone()).backward();
        let (gfg, gfl) = (host(fg.grad(&g).unwrap()), host(fl.grad(&g).unwrap()));
        check(&format!("{fusion:?} dL/dfg"), &fg0, &gfg, |v| host(loss(t(v, [b, c]), t(&fl0, [b, c, h, w])))[0], 12);
        check(&format!("{fusion:?} dL/dfl"), &fl0, &gfl, |v| host(loss(t(&fg0, [b, c]), t(v, [b, c, h, w])))[0], 72);
        if fusion == Fusion::Orthogonal {
            // The projection removes fg's direction: d fo / d fl has no component along fg,
            // so moving every local feature along fg leaves the loss unchanged.
            let shifted: Vec<f64> = (0..fl0.len())
                .map(|i| {
                    let (bi, ci) = (i / (c * h * w), (i / (h * w)) % c);
                    fl0[i] + 0.3 * fg0[bi * c + ci]
                })
                .collect();
            let a = host(loss(t(&fg0, [b, c]), t(&fl0, [b, c, h, w])))[0];
            let s = host(loss(t(&fg0, [b, c]), t(&shifted, [b, c, h, w])))[0];
            assert!((a - s).abs() < 1e-12, "orthogonal fusion is not invariant to fl + k·fg: {a} vs {s}");
        }
    }
}
