//! The training graph's quantizers compute what the integer contract says, and learn.

use qfd_host::train::method::{loss, Method};
use qfd_host::train::models::{Arch, Net, NetSpec};
use qfd_host::train::quant::{
    fake_quant_codes, ActQuant, ConvShape, QConv2d, QTensor, QuantMode, WeightQuant,
};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn spec(arch: Arch, bits: u8, feature_bits: Option<u8>) -> NetSpec {
    NetSpec {
        arch,
        input: [1, 12, 12],
        classes: 4,
        weight_bits: bits,
        act_bits: bits,
        fp_first_last: false,
        feature_bits,
        mean: vec![0.3],
        std: 0.35,
        width: 1.0,
        ewgs_delta: None,
        vit: Default::default(),
        log2_softmax: true,
    }
}

/// True when every element of `t` is (within float error) an integer.
fn all_integers(t: &Tensor) -> bool {
    f64::try_from((t - t.round()).abs().max()).unwrap() < 1e-4
}

#[test]
fn weights_lie_exactly_on_the_odd_grid() {
    tch::manual_seed(1);
    for bits in 1..=8u8 {
        let vs = nn::VarStore::new(Device::Cpu);
        let q = WeightQuant::new(&vs.root(), bits);
        let w = Tensor::randn([64, 9], (Kind::Float, Device::Cpu)) * 0.7;
        let l = ((1u32 << bits) - 1) as f64;
        let ints = q.quantize(&w) * l;
        assert!(all_integers(&ints), "{bits} bits: not integers");
        // Odd: (w_int + L - 1) / 2 is an integer code in [0, L - 1].
        let k = (&ints + l) / 2.0;
        assert!(all_integers(&k), "{bits} bits: not odd");
        assert!(f64::try_from(k.min()).unwrap() >= 0.0 && f64::try_from(k.max()).unwrap() <= l);
        // The integer form is exactly 2 * codes - (L - 1), the runtime's weight value.
        let from_codes = q.codes(&w) * 2.0 - l;
        assert!(f64::try_from((from_codes - ints).abs().max()).unwrap() < 1e-4);
    }
}

#[test]
fn activation_codes_stay_in_range_and_values_reconstruct_them() {
    tch::manual_seed(2);
    let x = Tensor::randn([8, 3, 5, 5], (Kind::Float, Device::Cpu)) * 3.0;
    for bits in [1u8, 2, 3, 4, 8] {
        let vs = nn::VarStore::new(Device::Cpu);
        let q = ActQuant::new(&vs.root(), bits);
        let out = q.forward(x.shallow_clone(), QuantMode::Calibrate);
        let l = ((1u32 << bits) - 1) as f64;
        let codes = &out.norm * l;
        assert!(all_integers(&codes));
        assert!(f64::try_from(codes.min()).unwrap() >= 0.0 && f64::try_from(codes.max()).unwrap() <= l);
        assert!(f64::try_from((q.codes(&x) - &codes).abs().max()).unwrap() < 1e-4);
        let (lo, hi) = (f64::try_from(&q.bounds.lower).unwrap(), f64::try_from(&q.bounds.upper).unwrap());
        assert!(lo < hi, "calibration gives a non-empty range");
        let rebuilt = codes / l * (hi - lo) + lo;
        assert!(f64::try_from((rebuilt - &out.value).abs().max()).unwrap() < 1e-4);
    }
}

#[test]
fn gradients_reach_bounds_alpha_and_weights() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let aq = ActQuant::new(&(&root / "aq"), 4);
    let shape = ConvShape { cin: 3, cout: 5, kernel: 3, stride: 1, padding: 1, groups: 1 };
    let conv = QConv2d::new(&(&root / "conv"), shape, Some(4));
    let x = Tensor::randn([4, 3, 6, 6], (Kind::Float, Device::Cpu));
    let _ = conv.forward(&aq.forward(x.shallow_clone(), QuantMode::Calibrate), QuantMode::Calibrate);
    let y = conv.forward(&aq.forward(x, QuantMode::Quantize), QuantMode::Quantize);
    (y.pow_tensor_scalar(2).mean(Kind::Float)).backward();
    let wq = conv.quant.as_ref().unwrap();
    for (name, t) in [
        ("lA", &aq.bounds.lower),
        ("uA", &aq.bounds.upper),
        ("lW", &wq.bounds.lower),
        ("uW", &wq.bounds.upper),
        ("alpha", &wq.alpha),
        ("weight", &conv.weight),
    ] {
        let g = t.grad();
        assert!(g.defined(), "{name}: no gradient");
        assert!(f64::try_from(g.abs().sum(Kind::Float)).unwrap() > 0.0, "{name}: zero gradient");
    }
}

/// With EWGS, a whole network's gradients are the straight-through ones, scaled element-wise by at most
/// `1 +- delta / 2` at each rounding: different, still pointing the same way, and reaching every quantizer.
#[test]
fn ewgs_scales_a_networks_gradients_without_turning_them() {
    // Both networks start from the same weights, copied: the random generator is shared with the tests
    // running beside this one, so seeding it twice would not give the same draws.
    tch::manual_seed(11);
    let first = nn::VarStore::new(Device::Cpu);
    let _ = Net::new(&first.root(), &spec(Arch::ResNet8, 3, None)).unwrap();
    let images = Tensor::rand([6, 1, 12, 12], (Kind::Float, Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
    let grads = |ewgs_delta: Option<f64>| {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &NetSpec { ewgs_delta, ..spec(Arch::ResNet8, 3, None) }).unwrap();
        vs.copy(&first).unwrap();
        tch::no_grad(|| net.forward(&images, true, QuantMode::Calibrate));
        let out = net.forward(&images, true, QuantMode::Quantize);
        net.backward(&out.logits.cross_entropy_for_logits(&labels)).unwrap();
        let mut v: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(name, t)| (name, t.grad().flatten(0, -1))).collect::<Vec<_>>()
    };
    let (ste, ewgs) = (grads(None), grads(Some(0.5)));
    let all = |g: &[(String, Tensor)]| {
        Tensor::cat(&g.iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>(), 0)
    };
    for (name, g) in &ewgs {
        let quantizer = ["lower", "upper", "alpha"].iter().any(|p| name.ends_with(p));
        if quantizer && !name.starts_with("feature") {
            assert!(
                g.defined() && f64::try_from(g.abs().sum(Kind::Float)).unwrap() > 0.0,
                "{name}: no gradient"
            );
        }
    }
    let (a, b) = (all(&ste), all(&ewgs));
    let cosine = f64::try_from((&a * &b).sum(Kind::Float) / (a.norm() * b.norm())).unwrap();
    let relative = f64::try_from((&a - &b).norm() / a.norm()).unwrap();
    assert!(relative > 1e-4, "EWGS changed nothing: relative difference {relative}");
    assert!(cosine > 0.9, "EWGS turned the gradient: cosine {cosine}");
}

#[test]
fn calibration_sets_ewgs_initial_values() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let conv = QConv2d::new(
        &vs.root(),
        ConvShape { cin: 2, cout: 3, kernel: 3, stride: 1, padding: 1, groups: 1 },
        Some(2),
    );
    let x = QTensor::float(Tensor::rand([2, 2, 5, 5], (Kind::Float, Device::Cpu)));
    let _ = conv.forward(&x, QuantMode::Calibrate);
    let q = conv.quant.as_ref().unwrap();
    let u = f64::try_from(&q.bounds.upper).unwrap();
    let want = 3.0 * f64::try_from(conv.weight.std(true)).unwrap();
    assert!((u - want).abs() < 1e-5, "uW {u} vs 3 std {want}");
    assert!((f64::try_from(&q.bounds.lower).unwrap() + u).abs() < 1e-6, "lW = -uW");
    assert!(f64::try_from(&q.alpha).unwrap() > 0.0);
}

#[test]
fn a_tiny_quantized_resnet_learns_with_every_method() {
    tch::manual_seed(5);
    // Four classes told apart by which quadrant of the image is bright.
    let n = 64;
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
    let images = Tensor::rand([n, 1, 12, 12], (Kind::Float, Device::Cpu)) * 0.2;
    for i in 0..n {
        let q = i % 4;
        let (y, x) = ((q / 2) * 6, (q % 2) * 6);
        let _ = images.get(i).narrow(1, y, 6).narrow(2, x, 6).fill_(0.9);
    }
    let teacher_vs = nn::VarStore::new(Device::Cpu);
    let teacher = Net::new(&teacher_vs.root(), &spec(Arch::ResNet8, 4, Some(4))).unwrap();
    for method in [Method::Qat, Method::Qfd, Method::LogitKd] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &spec(Arch::ResNet8, 4, None)).unwrap();
        let _ = net.forward(&images, true, QuantMode::Calibrate);
        let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..40 {
            let out = net.forward(&images, true, QuantMode::Quantize);
            let t = method
                .needs_teacher()
                .then(|| tch::no_grad(|| teacher.forward(&images, false, QuantMode::Float)));
            let l = loss(method, &out, t.as_ref(), &labels, 0.5, 4.0);
            opt.backward_step(&l.total);
            last = f64::try_from(&l.task).unwrap();
            first.get_or_insert(last);
        }
        assert!(last < 0.5 * first.unwrap(), "{method}: task loss {} -> {last}", first.unwrap());
    }
}

/// `(out channels, kernel, stride, groups)` of every conv, in order.
type ConvGeometry = Vec<(usize, usize, usize, usize)>;

/// A MobileNet spec at `[C, H, W]` with `width`.
fn mobilenet_spec(arch: Arch, input: [i64; 3], width: f64, bits: u8) -> NetSpec {
    NetSpec {
        arch,
        input,
        classes: 5,
        weight_bits: bits,
        act_bits: bits,
        fp_first_last: false,
        feature_bits: None,
        mean: vec![0.4; input[0] as usize],
        std: 0.3,
        width,
        ewgs_delta: None,
        vit: Default::default(),
        log2_softmax: true,
    }
}

/// The convs of the integer graph `qfd_codegen::synth` builds for the same architecture, input and width.
fn synth_convs(spec: &NetSpec) -> ConvGeometry {
    use qfd_codegen::synth::{synth, SynthConfig};
    use qfd_runtime::format::OpDesc;
    let [c, h, w] = spec.input.map(|d| d as usize);
    let config = SynthConfig { width: spec.width as f32, ..SynthConfig::new(spec.arch, [h, w, c]) };
    let graph = synth(&config).unwrap();
    graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            OpDesc::Conv2d(d) => Some((
                n.output.shape[2],
                d.window.kernel[0] as usize,
                d.window.stride[0] as usize,
                d.groups as usize,
            )),
            _ => None,
        })
        .collect()
}

fn net_convs(net: &Net) -> ConvGeometry {
    net.convs()
        .iter()
        .map(|c| {
            let s = c.shape;
            (s.cout as usize, s.kernel as usize, s.stride as usize, s.groups as usize)
        })
        .collect()
}

fn check_mobilenet(arch: Arch, input: [i64; 3], width: f64, bits: u8) {
    tch::manual_seed(6);
    let spec = mobilenet_spec(arch, input, width, bits);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &spec).unwrap();

    // Same convs as the integer graph: channels, kernels, strides, groups.
    let convs = net_convs(&net);
    assert_eq!(convs, synth_convs(&spec), "{arch}: convs differ from the integer graph");
    // Every conv's output has its own quantizer (V2's adds add one each).
    let adds = net.act_quantizers().iter().filter(|(name, _)| *name == "add").count();
    assert_eq!(net.act_quantizers().len(), convs.len() + adds, "{arch}: one quantizer per stored tensor");
    if arch == Arch::MobileNetV2 {
        assert!(adds > 0, "mobilenetv2 has residual adds");
    }
    // Parameter names follow synth's layer names.
    let names: Vec<String> = vs.variables().into_keys().collect();
    for want in ["conv1.conv.weight", "blocks.0.dw.conv.weight", "fc.weight"] {
        assert!(names.iter().any(|n| n == want), "{arch}: no {want} in {names:?}");
    }
    let layer = if arch == Arch::MobileNetV1 { "blocks.12.pw.conv.weight" } else { "conv_last.conv.weight" };
    assert!(names.iter().any(|n| n == layer), "{arch}: no {layer}");

    // Forward shapes.
    let n = 8;
    let images = Tensor::rand([n, input[0], input[1], input[2]], (Kind::Float, Device::Cpu));
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(spec.classes);
    let out = net.forward(&images, true, QuantMode::Calibrate);
    let last = convs.last().unwrap().0 as i64;
    assert_eq!(out.logits.size(), [n, spec.classes]);
    assert_eq!(out.feature.size(), [n, last]);

    // A few Adam steps after calibration lower the loss in Quantize mode.
    let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
    let mut losses = Vec::new();
    for _ in 0..15 {
        let out = net.forward(&images, true, QuantMode::Quantize);
        let l = out.logits.cross_entropy_for_logits(&labels);
        opt.backward_step(&l);
        let loss = f64::try_from(&l).unwrap();
        assert!(loss.is_finite(), "{arch}: loss {loss}");
        losses.push(loss);
    }
    // The mean of the last three steps, as single steps of a deep fake-quantized net are noisy.
    let end = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(end < 0.8 * losses[0], "{arch}: losses {losses:?}");
}

#[test]
fn mobilenet_v1_mirrors_the_integer_graph_and_learns() {
    check_mobilenet(Arch::MobileNetV1, [1, 32, 32], 0.25, 8);
}

#[test]
fn mobilenet_v2_mirrors_the_integer_graph_and_learns() {
    check_mobilenet(Arch::MobileNetV2, [3, 32, 32], 0.35, 8);
}

/// The quantizer as first written, four tensor ops before the rounding: the reference the fused form must
/// match.
fn codes_four_ops(x: &Tensor, lower: &Tensor, upper: &Tensor, bits: u8) -> Tensor {
    let l = ((1u32 << bits) - 1) as f64;
    let unit = ((x - lower) / (upper - lower)).clamp(0.0, 1.0) * l;
    &unit + (unit.round() - &unit).detach()
}

#[test]
fn the_fused_quantizer_has_the_four_op_forms_codes_and_gradients() {
    tch::manual_seed(4);
    // Inside the range, below and above it.
    let x = Tensor::randn([4096], (Kind::Float, Device::Cpu)) * 1.5;
    let g = Tensor::randn([4096], (Kind::Float, Device::Cpu));
    for bits in [1u8, 2, 4, 8] {
        let pass = |f: fn(&Tensor, &Tensor, &Tensor, u8) -> Tensor| {
            let x = x.detach().set_requires_grad(true);
            let lower = Tensor::from_slice(&[-0.8f32]).set_requires_grad(true);
            let upper = Tensor::from_slice(&[1.3f32]).set_requires_grad(true);
            let codes = f(&x, &lower, &upper, bits);
            (&codes * &g).sum(Kind::Float).backward();
            [codes.detach(), x.grad(), lower.grad(), upper.grad()]
        };
        let reference = pass(codes_four_ops);
        let fused = pass(fake_quant_codes);
        assert_eq!(reference[0], fused[0], "{bits} bits: the codes differ");
        for (name, (a, b)) in
            ["d/dx", "d/dlower", "d/dupper"].iter().zip(reference[1..].iter().zip(&fused[1..]))
        {
            let scale = f64::try_from(a.abs().max()).unwrap().max(1e-3);
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            assert!(diff <= 1e-4 * scale, "{bits} bits, {name}: the forms differ by {diff} (scale {scale})");
            assert!(f64::try_from(a.abs().sum(Kind::Float)).unwrap() > 1e-3, "{name} is not zero");
        }
    }
}
