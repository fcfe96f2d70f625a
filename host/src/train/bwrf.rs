//! Block-wise replacement training (BWRF; Yu et al., "Block-wise Replacement Framework", 2024): beside
//! the quantized network's own loss, each step trains mixed paths that put its blocks into the frozen
//! full-precision network it started from (its partner). A quantized block inside a full-precision context
//! learns to reproduce the full-precision representation, and the full-precision blocks after it give it
//! exact gradients instead of straight-through estimates. Only the quantized network is trained and
//! exported.
//!
//! The paper's text is not public beyond its abstract; these choices are ours, each an option:
//! - blocks ([`Net::blocks`]): the stem, each residual, depthwise-separable or inverted-residual block,
//!   and the head (pool and classifier);
//! - `--bwrf-mode single` (default): path `i` is the partner's blocks before `i`, the quantized block `i`
//!   (reading the partner's activation put on its own input grid by its quantized predecessor's output
//!   quantizer), then the partner's blocks after `i`; `prefix`: the quantized network's blocks up to `i`
//!   (its own forward pass), then the partner's;
//! - `--bwrf-path-loss ce` (default): a path's loss is the cross-entropy of its logits; `ce+kd` adds the
//!   softened KL divergence to the partner's logits (`--temperature`);
//! - `--bwrf-paths all` (default) or `K`: every path each step, or `K` drawn afresh each step (from the
//!   seed and the step, so a resumed run draws the same);
//! - `--bwrf-weight` (default 1): the loss is `network loss + weight * mean of the path losses`.
//!
//! The partner runs in evaluation mode (BatchNorm running statistics) with its variables frozen, so the
//! gradients of the path losses reach only the quantized network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Tensor;

use super::method::kl_soft;
use super::models::Net;
use super::quant::{QTensor, QuantMode};

/// Which mixed paths a step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BwrfMode {
    /// One quantized block among full-precision ones.
    #[default]
    Single,
    /// The quantized network's first blocks, then full-precision ones.
    Prefix,
}

/// The loss of one mixed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PathLoss {
    /// Cross-entropy of the path's logits.
    #[default]
    Ce,
    /// Cross-entropy plus the softened KL divergence to the partner's logits.
    CeKd,
}

/// How many of the mixed paths a step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathCount {
    /// Every path.
    #[default]
    All,
    /// This many, drawn afresh each step.
    Sample(usize),
}

macro_rules! words {
    ($ty:ty, $what:literal, $(($value:path, $word:literal)),*) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($value => $word),* })
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($value),)*
                    other => Err(format!(concat!("unknown ", $what, " '{}' (expected {})"), other,
                        [$($word),*].join(" or "))),
                }
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

words!(BwrfMode, "block-replacement mode", (BwrfMode::Single, "single"), (BwrfMode::Prefix, "prefix"));
words!(PathLoss, "path loss", (PathLoss::Ce, "ce"), (PathLoss::CeKd, "ce+kd"));

impl fmt::Display for PathCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathCount::All => f.write_str("all"),
            PathCount::Sample(k) => write!(f, "{k}"),
        }
    }
}

impl FromStr for PathCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(PathCount::All),
            k => match k.parse::<usize>() {
                Ok(k) if k > 0 => Ok(PathCount::Sample(k)),
                _ => Err(format!("'{s}' paths per step: expected all or a count of at least 1")),
            },
        }
    }
}

impl Serialize for PathCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PathCount::All => s.serialize_str("all"),
            PathCount::Sample(k) => s.serialize_u64(*k as u64),
        }
    }
}

impl<'de> Deserialize<'de> for PathCount {
    /// `"all"`, a count, or a count written as a string.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Word(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Count(k) => k.to_string(),
            Raw::Word(w) => w,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The options of block-wise replacement, as [`path_loss`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct BwrfOptions {
    /// Which paths.
    pub mode: BwrfMode,
    /// Each path's loss.
    pub path_loss: PathLoss,
    /// How many paths a step.
    pub paths: PathCount,
    /// Softening temperature of `ce+kd`.
    pub temperature: f64,
}

/// The paths of a network with `blocks` blocks in `mode`: path `i` ends its quantized part with block `i`.
/// Prefix paths stop before the head (the quantized network's whole forward pass is its own loss).
pub fn path_count(blocks: usize, mode: BwrfMode) -> usize {
    match mode {
        BwrfMode::Single => blocks,
        BwrfMode::Prefix => blocks - 1,
    }
}

/// The paths a step trains: all, or `k` of them drawn without replacement from `seed` and `step`.
pub fn paths_for_step(count: usize, paths: PathCount, seed: u64, step: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..count).collect();
    let PathCount::Sample(k) = paths else { return all };
    if k >= count {
        return all;
    }
    // SplitMix64 over (seed, step): the host draws, not libtorch's generator, so a resumed run repeats them.
    let mut state = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in 0..k {
        let j = i + (next() % (count - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(k);
    all.sort_unstable();
    all
}

/// The mean loss of the step's mixed paths (`paths`, from [`paths_for_step`]) of the quantized network
/// `student` (in training mode, fake-quantized) and its frozen full-precision `partner`, on `images`
/// with `labels`. `student_inputs` are the block inputs of the student's own forward pass on these images
/// ([`Net::forward_keeping_inputs`]), which prefix paths continue from.
pub fn path_loss(
    student: &Net,
    partner: &Net,
    images: &Tensor,
    labels: &Tensor,
    student_inputs: &[QTensor],
    paths: &[usize],
    options: &BwrfOptions,
) -> Tensor {
    let (blocks, mode) = (student.blocks(), QuantMode::Quantize);
    // The partner's own pass, when a path needs it: every block's input (single paths start from them), and
    // its logits (`ce+kd`). Prefix paths with `ce` need neither.
    let needed = options.mode == BwrfMode::Single || options.path_loss == PathLoss::CeKd;
    let partner_pass =
        needed.then(|| tch::no_grad(|| partner.forward_keeping_inputs(images, false, QuantMode::Float)));
    let partner_pass = || partner_pass.as_ref().expect("single paths and ce+kd run the partner's pass");
    // The partner's blocks from `i` on, reading a value of the quantized network.
    let partner_from = |i: usize, x: &QTensor| {
        partner.forward_from(i, QTensor::float(x.value.shallow_clone()), false, QuantMode::Float).logits
    };
    let losses: Vec<Tensor> = paths
        .iter()
        .map(|&i| {
            let logits = match options.mode {
                BwrfMode::Single => {
                    // Block `i` reads the partner's activation on its own input grid.
                    let partner_input = &partner_pass().1[i];
                    let x = match i {
                        0 => partner_input.shallow(),
                        _ => match student.block_output_quantizer(i - 1) {
                            Some(q) => q.forward(partner_input.value.shallow_clone(), mode),
                            // A transformer's stream: block replacement is for the CNNs (the
                            // configuration refuses it for a vit).
                            None => QTensor::float(partner_input.value.shallow_clone()),
                        },
                    };
                    if i + 1 == blocks {
                        student.head(&x, mode).logits
                    } else {
                        partner_from(i + 1, &student.block(i, &x, true, mode))
                    }
                }
                BwrfMode::Prefix => partner_from(i + 1, &student_inputs[i + 1]),
            };
            let ce = logits.cross_entropy_for_logits(labels);
            match options.path_loss {
                PathLoss::Ce => ce,
                PathLoss::CeKd => ce + kl_soft(&logits, &partner_pass().0.logits, options.temperature),
            }
        })
        .collect();
    Tensor::stack(&losses, 0).mean(tch::Kind::Float)
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    use super::*;
    use crate::train::models::{Arch, NetSpec};

    fn spec() -> NetSpec {
        spec_of(Arch::ResNet8)
    }

    fn spec_of(arch: Arch) -> NetSpec {
        NetSpec {
            arch,
            input: [1, 8, 8],
            classes: 4,
            weight_bits: 2,
            act_bits: 2,
            fp_first_last: false,
            feature_bits: None,
            mean: vec![0.5],
            std: 0.25,
            width: 0.25,
            ewgs_delta: None,
            vit: Default::default(),
            log2_softmax: true,
        }
    }

    /// The weights of each block of a ResNet-8, by block: stem, three basic blocks, head.
    const BLOCK_WEIGHTS: [&str; 5] = [
        "conv1.conv.weight",
        "layer1.0.conv1.conv.weight",
        "layer2.0.conv1.conv.weight",
        "layer3.0.conv1.conv.weight",
        "fc.weight",
    ];

    #[test]
    fn path_gradients_reach_the_quantized_blocks_of_the_path_only() {
        tch::manual_seed(0);
        let mut partner_vs = VarStore::new(Device::Cpu);
        let partner = Net::new(&partner_vs.root(), &spec()).unwrap();
        partner_vs.freeze();
        let partner_before: Vec<(String, Tensor)> =
            partner_vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let images = Tensor::rand([6, 1, 8, 8], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        for mode in [BwrfMode::Single, BwrfMode::Prefix] {
            let options =
                BwrfOptions { mode, path_loss: PathLoss::CeKd, paths: PathCount::All, temperature: 4.0 };
            for path in 0..path_count(BLOCK_WEIGHTS.len(), mode) {
                let vs = VarStore::new(Device::Cpu);
                let student = Net::new(&vs.root(), &spec()).unwrap();
                assert_eq!(student.blocks(), BLOCK_WEIGHTS.len());
                let (_, inputs) = student.forward_keeping_inputs(&images, true, QuantMode::Quantize);
                let loss = path_loss(&student, &partner, &images, &labels, &inputs, &[path], &options);
                loss.backward();
                let vars = vs.variables();
                for (block, name) in BLOCK_WEIGHTS.iter().enumerate() {
                    let grad = vars[*name].grad();
                    let trained = grad.defined() && f64::try_from(grad.abs().sum(Kind::Float)).unwrap() > 0.0;
                    // A single path trains its one quantized block; a prefix path every block up to it.
                    let expected = match mode {
                        BwrfMode::Single => block == path,
                        BwrfMode::Prefix => block <= path,
                    };
                    assert_eq!(trained, expected, "{mode} path {path}: gradient of {name}");
                }
                for (name, t) in partner_vs.variables() {
                    assert!(!t.requires_grad() && !t.grad().defined(), "the partner's {name} got a gradient");
                }
            }
        }
        for (name, before) in partner_before {
            assert!(partner_vs.variables()[&name].equal(&before), "the partner's {name} changed");
        }
    }

    #[test]
    fn every_architecture_splits_into_blocks_whose_paths_train() {
        // Stem and head, plus: 9 basic blocks, 13 depthwise-separable blocks, 17 inverted residuals and
        // `conv_last`.
        for (arch, blocks) in [(Arch::ResNet20, 11), (Arch::MobileNetV1, 15), (Arch::MobileNetV2, 20)] {
            tch::manual_seed(1);
            let mut partner_vs = VarStore::new(Device::Cpu);
            let partner = Net::new(&partner_vs.root(), &spec_of(arch)).unwrap();
            partner_vs.freeze();
            let vs = VarStore::new(Device::Cpu);
            let student = Net::new(&vs.root(), &spec_of(arch)).unwrap();
            assert_eq!(student.blocks(), blocks, "{arch:?}");
            let images = Tensor::rand([2, 1, 8, 8], (Kind::Float, Device::Cpu));
            let labels = Tensor::from_slice(&[0i64, 3]);
            // The blocks, run one after another, are the network.
            let whole = tch::no_grad(|| student.forward(&images, false, QuantMode::Quantize));
            let (by_blocks, inputs) =
                tch::no_grad(|| student.forward_keeping_inputs(&images, false, QuantMode::Quantize));
            assert_eq!(inputs.len(), blocks);
            assert!(whole.logits.allclose(&by_blocks.logits, 1e-6, 1e-6, false), "{arch:?}");
            for mode in [BwrfMode::Single, BwrfMode::Prefix] {
                let options =
                    BwrfOptions { mode, path_loss: PathLoss::Ce, paths: PathCount::All, temperature: 4.0 };
                let (_, inputs) = student.forward_keeping_inputs(&images, true, QuantMode::Quantize);
                let paths: Vec<usize> = (0..path_count(blocks, mode)).collect();
                let loss = path_loss(&student, &partner, &images, &labels, &inputs, &paths, &options);
                assert!(f64::try_from(&loss).unwrap().is_finite(), "{arch:?} {mode}");
                loss.backward();
            }
        }
    }

    #[test]
    fn options_read_as_written() {
        assert_eq!("prefix".parse::<BwrfMode>(), Ok(BwrfMode::Prefix));
        assert_eq!("ce+kd".parse::<PathLoss>(), Ok(PathLoss::CeKd));
        assert_eq!("all".parse::<PathCount>(), Ok(PathCount::All));
        assert_eq!("3".parse::<PathCount>(), Ok(PathCount::Sample(3)));
        assert!("0".parse::<PathCount>().unwrap_err().contains("at least 1"));
        assert!("pairs".parse::<BwrfMode>().unwrap_err().contains("single or prefix"));
        for mode in [BwrfMode::Single, BwrfMode::Prefix] {
            assert_eq!(mode.to_string().parse::<BwrfMode>(), Ok(mode));
        }
    }

    #[test]
    fn a_step_draws_distinct_paths_the_same_way_each_time() {
        let drawn = paths_for_step(7, PathCount::Sample(3), 5, 11);
        assert_eq!(drawn.len(), 3);
        assert!(drawn.windows(2).all(|w| w[0] < w[1]) && drawn.iter().all(|&p| p < 7));
        assert_eq!(drawn, paths_for_step(7, PathCount::Sample(3), 5, 11));
        // Over many steps every path is drawn.
        let mut seen = [false; 7];
        (0..50)
            .flat_map(|step| paths_for_step(7, PathCount::Sample(3), 5, step))
            .for_each(|p| seen[p] = true);
        assert!(seen.iter().all(|&s| s));
        assert_eq!(paths_for_step(4, PathCount::All, 0, 0), [0, 1, 2, 3]);
        assert_eq!(paths_for_step(4, PathCount::Sample(9), 0, 0), [0, 1, 2, 3]);
    }
}
