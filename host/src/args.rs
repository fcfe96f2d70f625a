//! Values shared by several commands, parsed from their command-line text with errors that say what the
//! expected form is.

use std::fmt;
use std::str::FromStr;

use clap::builder::{PossibleValuesParser, RangedU64ValueParser, TypedValueParser};
use qfd_accel::Backend;
use qfd_codegen::synth::{Arch, VitShape};

use crate::eval::EvalEngine;

/// Weight and activation bit-widths of the inner layers, written `W/A` (`4/2`) or `B` for both (`4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitWidths {
    /// Weight bits, 1-8.
    pub weight: u8,
    /// Activation bits, 1-8.
    pub act: u8,
}

/// `--bits` text that is not `W/A` or `B` with bit-widths 1-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--bits must be W/A with each 1-8, e.g. 4/4")]
pub struct BitWidthsError(pub String);

impl FromStr for BitWidths {
    type Err = BitWidthsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bits = |t: &str| t.trim().parse::<u8>().ok().filter(|b| (1..=8).contains(b));
        let parsed = match s.split_once('/') {
            Some((w, a)) => bits(w).zip(bits(a)),
            None => bits(s).map(|b| (b, b)),
        };
        parsed.map(|(weight, act)| BitWidths { weight, act }).ok_or_else(|| BitWidthsError(s.to_string()))
    }
}

impl fmt::Display for BitWidths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.weight, self.act)
    }
}

/// An input shape written `HxWxC` (`32x32x3`), every dimension 1-65535 (the format stores `u16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputShape(pub [usize; 3]);

/// `--input` text that is not a valid `HxWxC` shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputShapeError {
    /// Not three `x`-separated whole numbers.
    #[error("--input must be HxWxC, e.g. 32x32x3")]
    Format(String),
    /// A dimension is 0 or larger than the format allows.
    #[error("--input must be HxWxC with each dimension 1-65535, but {name} is {value}")]
    Dimension {
        /// The whole text.
        text: String,
        /// `H`, `W` or `C`.
        name: &'static str,
        /// The value found.
        value: usize,
    },
}

impl FromStr for InputShape {
    type Err = InputShapeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let format = || InputShapeError::Format(s.to_string());
        let dims: Vec<usize> = s
            .split(['x', 'X'])
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format())?;
        let dims: [usize; 3] = dims.try_into().map_err(|_| format())?;
        for (name, value) in ["H", "W", "C"].into_iter().zip(dims) {
            if !(1..=u16::MAX as usize).contains(&value) {
                return Err(InputShapeError::Dimension { text: s.to_string(), name, value });
            }
        }
        Ok(InputShape(dims))
    }
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [h, w, c] = self.0;
        write!(f, "{h}x{w}x{c}")
    }
}

/// A clap parser for `--arch` that lists the known architectures in `--help` and in its error.
pub fn arch_parser() -> impl TypedValueParser<Value = Arch> {
    PossibleValuesParser::new(Arch::ALL.map(Arch::name)).try_map(|name| name.parse::<Arch>())
}

/// A vision transformer's shape on the command line (`--arch vit`; other architectures ignore it).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct VitArgs {
    /// Patch side in pixels (vit): the input's height and width must be multiples of it.
    #[arg(long, default_value_t = VitShape::default().patch)]
    pub patch: usize,
    /// Embedding width, the channels of every token (vit).
    #[arg(long, default_value_t = VitShape::default().dim)]
    pub embed_dim: usize,
    /// Transformer blocks (vit).
    #[arg(long, default_value_t = VitShape::default().depth)]
    pub depth: usize,
    /// Attention heads, dividing the embedding width (vit).
    #[arg(long, default_value_t = VitShape::default().heads)]
    pub heads: usize,
    /// Hidden width of each MLP, in multiples of the embedding width (vit).
    #[arg(long, default_value_t = VitShape::default().mlp_ratio)]
    pub mlp_ratio: usize,
}

impl VitArgs {
    /// The shape these arguments give.
    pub fn shape(&self) -> VitShape {
        VitShape {
            patch: self.patch,
            dim: self.embed_dim,
            depth: self.depth,
            heads: self.heads,
            mlp_ratio: self.mlp_ratio,
        }
    }
}

/// The engine that computes an integer model's outputs on the host (`eval`, `study`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct EngineArgs {
    /// runtime: the no_std runtime the boards run, one image per thread. burn: whole batches on a burn
    /// backend (qfd-accel), with the runtime's logits bit for bit (docs/accel.md).
    #[arg(long, value_enum, default_value_t = EngineKind::Runtime)]
    pub engine: EngineKind,
    /// The burn engine's backend: flex (the CPU, always built; ndarray is another name for it), wgpu or
    /// cuda (in a qfd-host built with `--features wgpu` or `--features cuda`) [default: flex].
    #[arg(long, value_name = "NAME")]
    pub backend: Option<Backend>,
    /// Images per batch of the burn engine [default: 32 on the CPU, 1024 on a GPU].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: Option<usize>,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The no_std runtime.
    Runtime,
    /// The burn engine.
    Burn,
}

/// `--backend` or `--batch` without `--engine burn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{0} applies to the burn engine only; add --engine burn")]
pub struct EngineArgsError(pub &'static str);

impl EngineArgs {
    /// The engine these arguments choose; the runtime gets `threads` threads.
    pub fn engine(&self, threads: usize) -> Result<EvalEngine, EngineArgsError> {
        match self.engine {
            EngineKind::Runtime if self.backend.is_some() => Err(EngineArgsError("backend")),
            EngineKind::Runtime if self.batch.is_some() => Err(EngineArgsError("batch")),
            EngineKind::Runtime => Ok(EvalEngine::Runtime { threads }),
            EngineKind::Burn => {
                let backend = self.backend.unwrap_or(Backend::Flex);
                Ok(EvalEngine::Burn { backend, batch: self.batch.unwrap_or(backend.default_batch()) })
            }
        }
    }

    /// The arguments that choose `engine` again (for the processes of `study --jobs`).
    pub fn to_args(engine: EvalEngine) -> Vec<String> {
        match engine {
            EvalEngine::Runtime { .. } => Vec::new(),
            EvalEngine::Burn { backend, batch } => {
                ["--engine", "burn", "--backend", backend.name(), "--batch"]
                    .map(String::from)
                    .into_iter()
                    .chain([batch.to_string()])
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_accept_pairs_and_single_values() {
        assert_eq!("4/2".parse(), Ok(BitWidths { weight: 4, act: 2 }));
        assert_eq!("8".parse(), Ok(BitWidths { weight: 8, act: 8 }));
        for bad in ["9/9", "0/4", "4/", "/4", "a/b", "", "4/4/4", "-1"] {
            assert!(bad.parse::<BitWidths>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn input_shapes_need_three_positive_dimensions() {
        assert_eq!("96x96x3".parse(), Ok(InputShape([96, 96, 3])));
        assert!(matches!("0x32x3".parse::<InputShape>(), Err(InputShapeError::Dimension { name: "H", .. })));
        for bad in ["32x32", "32x32x3x1", "axbxc", "", "32*32*3", "70000x1x1"] {
            assert!(bad.parse::<InputShape>().is_err(), "{bad} accepted");
        }
    }

    #[derive(Debug, clap::Parser)]
    struct EngineCli {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn engine(args: &[&str]) -> Result<EvalEngine, EngineArgsError> {
        use clap::Parser;
        EngineCli::try_parse_from([&["t"], args].concat()).unwrap().engine.engine(3)
    }

    #[test]
    fn engine_options_choose_the_engine_and_survive_a_round_trip() {
        assert_eq!(engine(&[]), Ok(EvalEngine::Runtime { threads: 3 }));
        let cpu = EvalEngine::Burn { backend: Backend::Flex, batch: Backend::Flex.default_batch() };
        assert_eq!(engine(&["--engine", "burn"]), Ok(cpu));
        assert_eq!(engine(&["--engine", "burn", "--backend", "ndarray"]), Ok(cpu));
        let gpu = EvalEngine::Burn { backend: Backend::Cuda, batch: 7 };
        assert_eq!(engine(&["--engine", "burn", "--backend", "cuda", "--batch", "7"]), Ok(gpu));
        assert_eq!(engine(&["--backend", "wgpu"]), Err(EngineArgsError("backend")));
        assert_eq!(engine(&["--batch", "9"]), Err(EngineArgsError("batch")));
        // `study --jobs` hands the choice to its processes as arguments.
        for chosen in [cpu, gpu] {
            let args = EngineArgs::to_args(chosen);
            assert_eq!(engine(&args.iter().map(String::as_str).collect::<Vec<_>>()), Ok(chosen));
        }
        assert!(EngineArgs::to_args(EvalEngine::Runtime { threads: 3 }).is_empty());
    }
}
