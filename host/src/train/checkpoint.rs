//! Training checkpoints in a run directory, written so that a kill at any moment leaves the previous one
//! loadable.
//!
//! A checkpoint is `state.json` plus the weights file it names (`model-e<epoch>-<id>.safetensors`, every
//! variable of the `VarStore`, running statistics included) and optionally a file of extra tensors (e.g.
//! optimiser buffers, which `tch` cannot save). The tensor files are written under a temporary name, synced
//! and renamed; only then is `state.json` replaced atomically, which is the moment the new checkpoint takes
//! effect. Files of older checkpoints are removed afterwards. `state.json` records a hash of each file, so a
//! damaged one is refused rather than loaded.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};

use super::config::TrainConfig;
use super::metrics::{EpochMetrics, Evaluation};
use crate::fsutil::{self, FsError};

/// The file that makes a directory a checkpoint.
pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// Why a checkpoint could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FsError),
    /// Creating the directory or syncing a tensor file failed.
    #[error("cannot write checkpoint file {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// libtorch could not write or read a tensor file.
    #[error("tensor file {}: {source}", path.display())]
    Tensors {
        /// The file.
        path: PathBuf,
        /// What libtorch said.
        #[source]
        source: tch::TchError,
    },
    /// `state.json` does not parse, or is of another format version.
    #[error("{}: not a checkpoint state of this version: {message}", path.display())]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor file's bytes differ from what `state.json` recorded.
    #[error(
        "{} is damaged (its hash differs from the one in {STATE_FILE}); delete the run directory to start \
         afresh",
        path.display()
    )]
    Damaged {
        /// The tensor file.
        path: PathBuf,
    },
    /// The checkpoint was trained with another configuration.
    #[error("the checkpoint in {} was trained with another configuration ({}); use another run directory, \
             or delete this one to start afresh", dir.display(), differences.join("; "))]
    ConfigMismatch {
        /// The run directory.
        dir: PathBuf,
        /// One `key: <in checkpoint> vs <now>` per differing option.
        differences: Vec<String>,
    },
    /// The weights do not fit the model: another architecture or width.
    #[error(
        "the weights in {} do not fit this model (another architecture?): {}",
        path.display(),
        problems.join("; ")
    )]
    ArchMismatch {
        /// The weights file.
        path: PathBuf,
        /// Missing, unexpected and differently shaped variables (at most a few of each).
        problems: Vec<String>,
    },
}

/// What resuming a run needs besides the tensors.
///
/// Shuffling and augmentation are derived from `(config.seed, epoch)` alone ([`super::batches`]), so the
/// seed and the number of completed epochs are the whole random state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished; training resumes with epoch `epochs_completed + 1`.
    pub epochs_completed: usize,
    /// Optimiser steps taken, for the learning-rate schedule.
    pub step: u64,
    /// Best test accuracy so far.
    pub best_test_acc: Option<f64>,
    /// The configuration of the run.
    pub config: TrainConfig,
    /// Metrics of every completed epoch.
    pub metrics: Vec<EpochMetrics>,
    /// The model as training started, for stages that start from a trained one (after calibrating the
    /// quantizers): the accuracy quantization alone leaves, and the distance to the teacher.
    #[serde(default)]
    pub start: Option<Evaluation>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    producer: String,
    config_fingerprint: String,
    weights: FileRef,
    extra: Option<FileRef>,
    state: TrainState,
}

#[derive(Serialize, Deserialize)]
struct FileRef {
    name: String,
    fnv1a64: String,
}

/// A loaded checkpoint: the state, and the extra tensors saved with it (on the `VarStore`'s device).
#[derive(Debug)]
pub struct Checkpoint {
    /// Progress of the run.
    pub state: TrainState,
    /// The extra tensors given to [`Checkpoint::save`], by name.
    pub extra: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Whether `dir` holds a checkpoint.
    pub fn exists(dir: &Path) -> bool {
        dir.join(STATE_FILE).is_file()
    }

    /// Saves every variable of `vs`, the `extra` tensors and `state` into `dir` (created if missing).
    pub fn save(
        dir: &Path,
        vs: &VarStore,
        extra: &[(&str, &Tensor)],
        state: &TrainState,
    ) -> Result<(), CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io { path: dir.into(), source })?;
        let id = unique_id();
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let weights = write_tensors(dir, &format!("model-e{:04}-{id}", state.epochs_completed), &vars)?;
        let extra = match extra {
            [] => None,
            _ => {
                let named: Vec<_> = extra.iter().map(|(n, t)| (n.to_string(), t.shallow_clone())).collect();
                Some(write_tensors(dir, &format!("extra-e{:04}-{id}", state.epochs_completed), &named)?)
            }
        };
        let file = StateFile {
            format: FORMAT,
            producer: crate::PRODUCER.into(),
            config_fingerprint: fingerprint(&state.config),
            weights,
            extra,
            state: state.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("a checkpoint state is always representable");
        fsutil::write_atomic(&dir.join(STATE_FILE), &json)?;
        remove_stale(dir, &file);
        Ok(())
    }

    /// Reads the state of the checkpoint in `dir` without its tensors (e.g. to build a teacher's model from
    /// its configuration).
    pub fn peek(dir: &Path) -> Result<TrainState, CheckpointError> {
        Ok(read_state_file(dir)?.state)
    }

    /// Loads the checkpoint in `dir` into `vs`, refusing one trained with a configuration other than
    /// `config` (device, run and data directories may differ) or whose variables do not fit `vs`.
    pub fn load(dir: &Path, vs: &mut VarStore, config: &TrainConfig) -> Result<Checkpoint, CheckpointError> {
        let file = read_state_file(dir)?;
        // Compared option by option rather than by the recorded fingerprint, so that an option added to
        // `TrainConfig` later (read back at its default) does not orphan older checkpoints.
        let differences = differences(&file.state.config, config);
        if !differences.is_empty() {
            return Err(CheckpointError::ConfigMismatch { dir: dir.into(), differences });
        }
        let path = dir.join(&file.weights.name);
        let tensors: HashMap<String, Tensor> = read_tensors(&path, &file.weights)?.into_iter().collect();
        let mut problems = Vec::new();
        let mut vars = vs.variables();
        for (name, var) in &vars {
            match tensors.get(name) {
                None => problems.push(format!("{name} missing")),
                Some(t) if t.size() != var.size() => {
                    problems.push(format!("{name} is {:?}, the model has {:?}", t.size(), var.size()))
                }
                Some(_) => {}
            }
        }
        problems.extend(tensors.keys().filter(|n| !vars.contains_key(*n)).map(|n| format!("{n} unexpected")));
        if !problems.is_empty() {
            problems.sort();
            problems.truncate(6);
            return Err(CheckpointError::ArchMismatch { path, problems });
        }
        tch::no_grad(|| {
            for (name, var) in vars.iter_mut() {
                var.f_copy_(&tensors[name])
                    .map_err(|source| CheckpointError::Tensors { path: path.clone(), source })?;
            }
            Ok::<(), CheckpointError>(())
        })?;
        let mut extra = HashMap::new();
        if let Some(r) = &file.extra {
            for (name, t) in read_tensors(&dir.join(&r.name), r)? {
                extra.insert(name, t.to_device(vs.device()));
            }
        }
        Ok(Checkpoint { state: file.state, extra })
    }
}

/// A hash of the options that change what training computes (all but device, run and data directories),
/// with the learning rates resolved: equal fingerprints mean a run can be resumed with this configuration.
pub fn fingerprint(config: &TrainConfig) -> String {
    let json = serde_json::to_vec(&normalized(config)).expect("a config is always representable");
    format!("{:016x}", fnv1a64(&json))
}

fn normalized(config: &TrainConfig) -> serde_json::Value {
    let mut c = config.clone();
    (c.lr, c.quant_lr) = (Some(config.lr()), Some(config.quant_lr()));
    (c.device, c.run_dir, c.data) = (Default::default(), None, None);
    let mut value = serde_json::to_value(c).expect("a config is always representable");
    // Block replacement's options change nothing for other methods (and runs made before they existed keep
    // their fingerprints).
    if let (false, Some(keys)) = (config.method.needs_partner(), value.as_object_mut()) {
        keys.retain(|k, _| !k.starts_with("bwrf-"));
    }
    value
}

fn differences(old: &TrainConfig, new: &TrainConfig) -> Vec<String> {
    let (old, new) = (normalized(old), normalized(new));
    let null = serde_json::Value::Null;
    let mut keys: Vec<&String> =
        old.as_object().into_iter().chain(new.as_object()).flat_map(|o| o.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (old.get(k).unwrap_or(&null), new.get(k).unwrap_or(&null));
            (a != b).then(|| format!("{k}: {a} in the checkpoint vs {b} now"))
        })
        .collect()
}

fn read_state_file(dir: &Path) -> Result<StateFile, CheckpointError> {
    let path = dir.join(STATE_FILE);
    let bytes = fsutil::read(&path)?;
    let bad = |message: String| CheckpointError::BadState { path: path.clone(), message };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.format != FORMAT {
        return Err(bad(format!("format {} (this tool reads format {FORMAT})", file.format)));
    }
    Ok(file)
}

/// Writes `tensors` (copied to the CPU) to `dir/<stem>.safetensors` via a synced temporary file and a rename.
fn write_tensors(dir: &Path, stem: &str, tensors: &[(String, Tensor)]) -> Result<FileRef, CheckpointError> {
    let name = format!("{stem}.safetensors");
    let (path, tmp) = (dir.join(&name), dir.join(format!(".{name}.tmp")));
    let cpu: Vec<(&str, Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t.detach().to_device(Device::Cpu).contiguous())).collect();
    let result = Tensor::write_safetensors(&cpu, &tmp)
        .map_err(|source| CheckpointError::Tensors { path: path.clone(), source })
        .and_then(|()| {
            let io = |source| CheckpointError::Io { path: path.clone(), source };
            let bytes = fs::read(&tmp).map_err(io)?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| fs::rename(&tmp, &path))
                .map_err(io)?;
            Ok(FileRef { name, fnv1a64: format!("{:016x}", fnv1a64(&bytes)) })
        });
    if result.is_err() {
        // The write already failed; a leftover temporary file would only be removed by the next save.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read_tensors(path: &Path, r: &FileRef) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let bytes = fsutil::read(path)?;
    if format!("{:016x}", fnv1a64(&bytes)) != r.fnv1a64 {
        return Err(CheckpointError::Damaged { path: path.into() });
    }
    Tensor::read_safetensors(path).map_err(|source| CheckpointError::Tensors { path: path.into(), source })
}

/// Removes tensor files and temporary files that the current `state.json` does not name.
fn remove_stale(dir: &Path, current: &StateFile) {
    let keep: Vec<&str> =
        std::iter::once(&current.weights).chain(&current.extra).map(|r| r.name.as_str()).collect();
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bare = name.strip_prefix('.').unwrap_or(&name);
        let ours = bare.starts_with("model-e") || bare.starts_with("extra-e");
        if ours && name.contains(".safetensors") && !keep.contains(&name.as_str()) {
            // Only disk space is lost if this fails; the checkpoint itself is complete.
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn unique_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// 64-bit FNV-1a: a stable hash (unlike `std`'s) for fingerprints and file checks.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Copies into `vs` every variable of the checkpoint in `dir` whose name and shape match, whatever the
/// configuration it was trained with: how a student starts from the full-precision model. Returns the names
/// of the variables of `vs` that the checkpoint did not have (quantizer parameters, left for calibration).
pub fn load_matching_weights(dir: &Path, vs: &mut VarStore) -> Result<Vec<String>, CheckpointError> {
    let file = read_state_file(dir)?;
    let path = dir.join(&file.weights.name);
    let tensors: HashMap<String, Tensor> = read_tensors(&path, &file.weights)?.into_iter().collect();
    let mut missing = Vec::new();
    tch::no_grad(|| {
        for (name, var) in vs.variables().iter_mut() {
            match tensors.get(name) {
                Some(t) if t.size() == var.size() => var
                    .f_copy_(t)
                    .map_err(|source| CheckpointError::Tensors { path: path.clone(), source })?,
                _ => missing.push(name.clone()),
            }
        }
        Ok::<(), CheckpointError>(())
    })?;
    missing.sort();
    Ok(missing)
}
