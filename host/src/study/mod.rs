//! `qfd-host study`: the paper's comparison as one command. A study file (TOML) names a grid of
//! architectures, methods, bit-widths and seeds, plus a lambda ablation; [`plan`] turns it into runs,
//! [`run::run_one`] trains, exports and checks one on a board (skipping what is already done), and
//! [`report`] writes the Markdown report with its plots.
//!
//! Every student of one architecture and seed shares one full-precision model and one teacher per feature
//! bit-width (`<out>/<arch>/seed<N>/shared/`), so the grid trains each of them once.

pub mod jobs;
pub mod plots;
pub mod report;
pub mod run;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::args::BitWidths;
use crate::fsutil::{self, FsError};
use crate::train::bwrf::{BwrfMode, PathLoss};
use crate::train::config::{ConfigError, TrainConfig};
use crate::train::method::Method;

/// Why a study file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] FsError),
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The study file.
        path: PathBuf,
        /// What is wrong, with the key and line.
        message: String,
    },
    /// A value is out of range or the grid is empty.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The study file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `[train]` table has a bad option.
    #[error("{}: [train]: {source}", path.display())]
    Train {
        /// The study file.
        path: PathBuf,
        /// The option refused.
        #[source]
        source: ConfigError,
    },
}

/// A row of the comparison: a training method, and for QFD the bit-width of the teacher's feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    /// The method.
    pub method: Method,
    /// The QFD teacher's feature bits (QFD only).
    pub feature_bits: Option<u8>,
}

impl Variant {
    /// Whether the variant trains a quantized student (everything but `fp`).
    pub fn quantized(self) -> bool {
        self.method.quantized()
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.feature_bits {
            Some(bits) => write!(f, "{}-f{bits}", self.method),
            None => write!(f, "{}", self.method),
        }
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // The methods with a QFD teacher name its feature bits: `qfd-f4`, `bwrf-qfd-f4`.
        for method in [Method::Qfd, Method::BwrfQfd] {
            if let Some(bits) = s.strip_prefix(&format!("{method}-f")) {
                return match bits.parse::<u8>() {
                    Ok(b @ (1 | 4 | 8)) => Ok(Variant { method, feature_bits: Some(b) }),
                    _ => Err(format!(
                        "'{s}': the QFD teacher's feature bits must be 1, 4 or 8 ({method}-f1, {method}-f4, \
                         {method}-f8)"
                    )),
                };
            }
        }
        match s.parse::<Method>()? {
            method @ (Method::Qfd | Method::BwrfQfd) => Err(format!(
                "'{method}' needs the teacher's feature bits: {method}-f1, {method}-f4 or {method}-f8"
            )),
            method => Ok(Variant { method, feature_bits: None }),
        }
    }
}

impl Serialize for Variant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Variant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Bit-widths written `"W/A"` in a study file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bits {
    /// Weight bits.
    pub w: u8,
    /// Activation bits.
    pub a: u8,
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "W{}A{}", self.w, self.a)
    }
}

impl Serialize for Bits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}/{}", self.w, self.a))
    }
}

impl<'de> Deserialize<'de> for Bits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let b: BitWidths = text.parse().map_err(serde::de::Error::custom)?;
        Ok(Bits { w: b.weight, a: b.act })
    }
}

/// Where the integer models are checked on a board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceStep {
    /// The board (`qfd-host boards` lists them); an emulated one runs here.
    pub board: String,
    /// The first N test images: the fixed subset every model runs on.
    pub samples: usize,
}

/// The lambda ablation: one method at one bit-width, trained with each lambda.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LambdaAblation {
    /// The bit-width.
    pub bits: Bits,
    /// The distillation method.
    pub method: Variant,
    /// The lambdas (the one of `[train]` is the grid's own run).
    pub lambdas: Vec<f64>,
}

/// The block-replacement ablation: one block-replacement method at one bit-width, trained with each
/// combination of path mode and path loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BwrfAblation {
    /// The bit-width.
    pub bits: Bits,
    /// `bwrf` or `bwrf-qfd-f<bits>`.
    pub method: Variant,
    /// The path modes (the one of `[train]` is the grid's own).
    pub modes: Vec<BwrfMode>,
    /// The path losses (the one of `[train]` is the grid's own).
    pub path_losses: Vec<PathLoss>,
}

/// The block-replacement setting a run was trained with (its mode and path loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BwrfSetting {
    /// Which mixed paths.
    pub mode: BwrfMode,
    /// Each path's loss.
    pub path_loss: PathLoss,
}

impl fmt::Display for BwrfSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.mode, self.path_loss)
    }
}

/// A study file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StudyConfig {
    /// The profile's name (`quick`, `full`), used in the report and the run directories.
    pub profile: String,
    /// One line on what the profile is for.
    #[serde(default)]
    pub description: String,
    /// Only train on a CUDA GPU: on a machine without one the study is skipped, not run for days.
    #[serde(default)]
    pub requires_gpu: bool,
    /// Where the runs go [default: `runs/study-<profile>`].
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Architectures.
    pub archs: Vec<String>,
    /// Seeds: every cell is trained once per seed.
    pub seeds: Vec<u64>,
    /// Bit-widths of the quantized methods.
    pub bits: Vec<Bits>,
    /// Methods, `qfd-f<bits>` for QFD with the teacher's feature quantized to `bits`.
    pub methods: Vec<Variant>,
    /// The board check.
    pub device: Option<DeviceStep>,
    /// The lambda ablation.
    pub ablation: Option<LambdaAblation>,
    /// The block-replacement ablation.
    #[serde(default)]
    pub bwrf_ablation: Option<BwrfAblation>,
    /// Measure accuracies on the first N test images only [default: the whole test split] (quick checks).
    #[serde(default)]
    pub test_images: Option<usize>,
    /// Training options shared by every run (the keys of `qfd-host train --config`).
    #[serde(default)]
    pub train: TrainConfig,
}

impl StudyConfig {
    /// Reads and checks a study file.
    pub fn from_file(path: &Path) -> Result<StudyConfig, StudyError> {
        let bytes = fsutil::read(path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| StudyError::Parse { path: path.into(), message: "not UTF-8 text".into() })?;
        let study: StudyConfig = toml::from_str(&text)
            .map_err(|e| StudyError::Parse { path: path.into(), message: e.to_string() })?;
        study.validate(path)?;
        Ok(study)
    }

    fn validate(&self, path: &Path) -> Result<(), StudyError> {
        let invalid = |message: String| Err(StudyError::Invalid { path: path.into(), message });
        if self.profile.is_empty() || !self.profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid(format!("profile '{}': use letters, digits and '-'", self.profile));
        }
        for (name, empty) in [
            ("archs", self.archs.is_empty()),
            ("seeds", self.seeds.is_empty()),
            ("methods", self.methods.is_empty()),
            ("bits", self.bits.is_empty() && self.methods.iter().any(|m| m.quantized())),
        ] {
            if empty {
                return invalid(format!("{name} is empty: the grid has nothing to train"));
            }
        }
        if self.test_images == Some(0) {
            return invalid("test-images must be at least 1".into());
        }
        if let Some(device) = &self.device {
            if device.samples == 0 {
                return invalid("device.samples must be at least 1".into());
            }
        }
        if let Some(ablation) = &self.ablation {
            if ablation.method.method.needs_teacher() && ablation.lambdas.is_empty() {
                return invalid("ablation.lambdas is empty".into());
            }
            if !ablation.method.method.needs_teacher() {
                return invalid(format!(
                    "ablation.method {}: lambda only weighs a distillation term",
                    ablation.method
                ));
            }
            if let Some(l) = ablation.lambdas.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
                return invalid(format!("ablation lambda {l}: must be >= 0"));
            }
        }
        if let Some(ab) = &self.bwrf_ablation {
            if !ab.method.method.needs_partner() {
                return invalid(format!(
                    "bwrf-ablation.method {}: expected bwrf or bwrf-qfd-f<bits>",
                    ab.method
                ));
            }
            if ab.modes.is_empty() || ab.path_losses.is_empty() {
                return invalid("bwrf-ablation: modes and path-losses must each name at least one".into());
            }
        }
        let mut probe = self.train.clone();
        for arch in &self.archs {
            probe.arch = arch.clone();
            probe.validate().map_err(|source| StudyError::Train { path: path.into(), source })?;
        }
        Ok(())
    }

    /// How every run is measured.
    pub fn measure(&self) -> run::Measure<'_> {
        run::Measure {
            device: self.device.as_ref(),
            test_images: self.test_images,
            engine: Default::default(),
        }
    }

    /// The directory of the study's runs.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/study-{}", self.profile)))
    }
}

/// Which part of the study a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// The method x bit-width grid.
    Grid,
    /// The lambda ablation.
    Lambda,
    /// The block-replacement ablation.
    Bwrf,
}

/// One model to train, export and check.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Grid or ablation.
    pub group: Group,
    /// Architecture.
    pub arch: String,
    /// Method (and QFD feature bits).
    pub variant: Variant,
    /// Bit-widths (`None` for `fp`).
    pub bits: Option<Bits>,
    /// Distillation weight.
    pub lambda: f64,
    /// Seed.
    pub seed: u64,
    /// The training options of the final stage (run directory set).
    pub config: TrainConfig,
    /// Where the shared full-precision model and teachers go.
    pub shared: PathBuf,
    /// The block-replacement setting (block-replacement methods only).
    pub bwrf: Option<BwrfSetting>,
}

impl RunSpec {
    /// A short name: `resnet8 qfd-f4 W2A2 seed 0`, with the lambda in the ablation.
    pub fn label(&self) -> String {
        let bits = self.bits.map(|b| format!(" {b}")).unwrap_or_default();
        let lambda = match (self.group, self.bwrf) {
            (Group::Lambda, _) => format!(" lambda {}", self.lambda),
            (Group::Bwrf, Some(b)) => format!(" {b}"),
            _ => String::new(),
        };
        format!("{} {}{bits}{lambda} seed {}", self.arch, self.variant, self.seed)
    }

    /// The run directory of the final stage.
    pub fn dir(&self) -> PathBuf {
        self.config.run_dir()
    }
}

/// Every run of `study`, in the order they are trained: per architecture and seed, the grid (fp first), then
/// the ablation's lambdas other than the grid's own, then the block-replacement ablation's settings other
/// than the grid's own.
pub fn plan(study: &StudyConfig) -> Vec<RunSpec> {
    let out = study.out_dir();
    let mut runs = Vec::new();
    for arch in &study.archs {
        for &seed in &study.seeds {
            let seed_dir = out.join(arch).join(format!("seed{seed}"));
            let shared = seed_dir.join("shared");
            let grid_bwrf =
                BwrfSetting { mode: study.train.bwrf_mode, path_loss: study.train.bwrf_path_loss };
            let spec_with = |group, variant: Variant, bits: Option<Bits>, lambda: f64, bwrf: BwrfSetting| {
                let mut name = variant.to_string();
                if let Some(b) = bits {
                    name += &format!("-w{}a{}", b.w, b.a);
                }
                match group {
                    Group::Lambda => name += &format!("-lambda{lambda}"),
                    Group::Bwrf => name += &format!("-{}-{}", bwrf.mode, bwrf.path_loss),
                    Group::Grid => {}
                }
                let mut config = TrainConfig {
                    arch: arch.clone(),
                    method: variant.method,
                    seed,
                    lambda,
                    bwrf_mode: bwrf.mode,
                    bwrf_path_loss: bwrf.path_loss,
                    run_dir: Some(seed_dir.join(name)),
                    ..study.train.clone()
                };
                if let Some(b) = bits {
                    (config.wbits, config.abits) = (b.w, b.a);
                }
                if let Some(f) = variant.feature_bits {
                    config.teacher_feature_bits = f;
                }
                RunSpec {
                    group,
                    arch: arch.clone(),
                    variant,
                    bits,
                    lambda,
                    seed,
                    config,
                    shared: shared.clone(),
                    bwrf: variant.method.needs_partner().then_some(bwrf),
                }
            };
            let spec = |group, variant, bits, lambda| spec_with(group, variant, bits, lambda, grid_bwrf);
            for &variant in &study.methods {
                if variant.quantized() {
                    for &bits in &study.bits {
                        runs.push(spec(Group::Grid, variant, Some(bits), study.train.lambda));
                    }
                } else {
                    runs.push(spec(Group::Grid, variant, None, study.train.lambda));
                }
            }
            if let Some(ab) = &study.ablation {
                for &lambda in ab.lambdas.iter().filter(|&&l| l != study.train.lambda) {
                    runs.push(spec(Group::Lambda, ab.method, Some(ab.bits), lambda));
                }
            }
            if let Some(ab) = &study.bwrf_ablation {
                for &mode in &ab.modes {
                    for &path_loss in &ab.path_losses {
                        let setting = BwrfSetting { mode, path_loss };
                        if setting != grid_bwrf {
                            let lambda = study.train.lambda;
                            runs.push(spec_with(Group::Bwrf, ab.method, Some(ab.bits), lambda, setting));
                        }
                    }
                }
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: &str = r#"
        profile = "quick"
        archs = ["resnet8"]
        seeds = [0, 1]
        bits = ["2/2", "4/4"]
        methods = ["fp", "qat", "qfd-f1", "qfd-f4"]
        [device]
        board = "qemu-m4"
        samples = 50
        [ablation]
        bits = "2/2"
        method = "qfd-f4"
        lambdas = [0.1, 0.5, 1.0]
        [train]
        subset = 1000
        epochs = 2
    "#;

    fn parse(text: &str) -> Result<StudyConfig, StudyError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.toml");
        std::fs::write(&path, text).unwrap();
        StudyConfig::from_file(&path)
    }

    const BWRF: &str = r#"
        profile = "bwrf"
        archs = ["resnet8"]
        seeds = [0]
        bits = ["2/2"]
        methods = ["qat", "bwrf", "bwrf-qfd-f4"]
        [bwrf-ablation]
        bits = "2/2"
        method = "bwrf"
        modes = ["single", "prefix"]
        path-losses = ["ce", "ce+kd"]
        [train]
        bwrf-paths = 2
    "#;

    #[test]
    fn block_replacement_runs_and_their_ablation_each_have_a_run_of_their_own() {
        let runs = plan(&parse(BWRF).unwrap());
        // The grid's three methods, then the ablation's settings but the grid's own (single, ce).
        assert_eq!(runs.len(), 3 + 3);
        let bq = runs.iter().find(|r| r.variant.to_string() == "bwrf-qfd-f4").unwrap();
        assert_eq!((bq.config.method, bq.config.teacher_feature_bits), (Method::BwrfQfd, 4));
        assert_eq!(bq.config.bwrf_paths, crate::train::bwrf::PathCount::Sample(2));
        assert_eq!(bq.bwrf, Some(BwrfSetting { mode: BwrfMode::Single, path_loss: PathLoss::Ce }));
        assert!(runs.iter().find(|r| r.variant.method == Method::Qat).unwrap().bwrf.is_none());
        let ablation: Vec<&RunSpec> = runs.iter().filter(|r| r.group == Group::Bwrf).collect();
        let labels: Vec<String> = ablation.iter().map(|r| r.label()).collect();
        assert_eq!(
            labels,
            [
                "resnet8 bwrf W2A2 single ce+kd seed 0",
                "resnet8 bwrf W2A2 prefix ce seed 0",
                "resnet8 bwrf W2A2 prefix ce+kd seed 0"
            ]
        );
        for r in &ablation {
            let b = r.bwrf.unwrap();
            assert_eq!((r.config.bwrf_mode, r.config.bwrf_path_loss), (b.mode, b.path_loss));
        }
        let mut dirs: Vec<_> = runs.iter().map(RunSpec::dir).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), runs.len(), "every run has its own directory");
    }

    #[test]
    fn block_replacement_names_and_ablations_are_checked() {
        assert!("bwrf-qfd".parse::<Variant>().unwrap_err().contains("bwrf-qfd-f4"));
        assert!("bwrf-qfd-f3".parse::<Variant>().unwrap_err().contains("1, 4 or 8"));
        assert_eq!("bwrf-qfd-f8".parse::<Variant>().unwrap().to_string(), "bwrf-qfd-f8");
        let wrong_method = BWRF.replace("method = \"bwrf\"", "method = \"qfd-f4\"");
        assert!(parse(&wrong_method).unwrap_err().to_string().contains("expected bwrf"));
        let no_modes = BWRF.replace("modes = [\"single\", \"prefix\"]", "modes = []");
        assert!(parse(&no_modes).unwrap_err().to_string().contains("at least one"));
        let bad_mode = BWRF.replace("\"prefix\"]", "\"suffix\"]");
        assert!(parse(&bad_mode).unwrap_err().to_string().contains("single or prefix"));
    }

    #[test]
    fn the_plan_covers_the_grid_and_the_ablation_once_each() {
        let study = parse(QUICK).unwrap();
        let runs = plan(&study);
        // Per seed: fp, 3 quantized methods x 2 bit-widths, 2 extra lambdas.
        assert_eq!(runs.len(), 2 * (1 + 3 * 2 + 2));
        let mut dirs: Vec<_> = runs.iter().map(RunSpec::dir).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), runs.len(), "every run has its own directory");
        let qfd1 = runs.iter().find(|r| r.label() == "resnet8 qfd-f1 W2A2 seed 1").unwrap();
        assert_eq!(qfd1.config.teacher_feature_bits, 1);
        assert_eq!((qfd1.config.wbits, qfd1.config.abits, qfd1.config.seed), (2, 2, 1));
        assert_eq!(qfd1.config.subset, Some(1000));
        assert_eq!(qfd1.shared, PathBuf::from("runs/study-quick/resnet8/seed1/shared"));
        let lambdas: Vec<f64> =
            runs.iter().filter(|r| r.group == Group::Lambda && r.seed == 0).map(|r| r.lambda).collect();
        assert_eq!(lambdas, [0.1, 1.0], "the grid's own lambda (0.5) is not trained twice");
    }

    #[test]
    fn bad_study_files_are_refused_with_the_reason() {
        let cases = [
            (QUICK.replace("\"qfd-f4\"]", "\"qfd-f3\"]"), "1, 4 or 8"),
            (QUICK.replace("\"qfd-f4\"]", "\"qfd\"]"), "qfd-f1"),
            (QUICK.replace("\"2/2\", \"4/4\"", "\"2/9\""), "W/A"),
            (QUICK.replace("seeds = [0, 1]", "seeds = []"), "seeds is empty"),
            (QUICK.replace("samples = 50", "samples = 0"), "samples"),
            (QUICK.replace("epochs = 2", "epochs = 0"), "epochs"),
            (QUICK.replace("subset = 1000", "subsett = 1000"), "subsett"),
            (QUICK.replace("method = \"qfd-f4\"", "method = \"qat\""), "lambda only"),
            (QUICK.replace("profile = \"quick\"", "profile = \"a b\""), "profile"),
        ];
        for (text, expected) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "{expected}: {e}");
            assert!(e.contains("study.toml"), "the error names the file: {e}");
        }
    }

    #[test]
    fn variants_read_and_print_the_same() {
        for name in ["fp", "qat", "logit-kd", "feature-kd", "qfd-f1", "qfd-f4", "qfd-f8"] {
            assert_eq!(name.parse::<Variant>().unwrap().to_string(), name);
        }
    }
}
