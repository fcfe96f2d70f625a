//! `qfd-host export`: a trained quantized checkpoint becomes an integer `.qfdm` model.
//!
//! [`Net::integer_ops`] lists the integer ops the network becomes; [`fold`] turns each trained layer into its
//! integer form (weights as codes, BatchNorm / `|alpha|` / ReLU / next quantizer as per-channel
//! requantization, input normalisation into the first layer); `qfd-codegen` packs the weights, plans the
//! arena and encodes the file, which the runtime then loads, proving among other things that no
//! accumulator can overflow `i32`. The result is deterministic: the same checkpoint gives the same bytes.

pub mod fold;

use std::path::{Path, PathBuf};

use qfd_codegen::encode::{encode_model_as, EncodeError};
use qfd_codegen::graph::{Graph, GraphError, GraphMeta, ValueId};
use qfd_runtime::LoadError;
use tch::Device;

use crate::train::checkpoint::{Checkpoint, CheckpointError, STATE_FILE};
use crate::train::config::TrainConfig;
use crate::train::models::{IntegerOp, Net};
use crate::train::run::{load_trained, Data, TrainError};
use fold::{fold_add, fold_classifier, fold_conv, ConvInput, Grid};

/// Why a checkpoint cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The path holds no checkpoint.
    #[error("{} is not a run directory or checkpoint (no {STATE_FILE}); pass the directory `qfd-host train` printed", path.display())]
    NotACheckpoint {
        /// What was given.
        path: PathBuf,
    },
    /// The checkpoint, or its data set, cannot be read, or does not match its architecture.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The checkpoint cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A full-precision model (method `fp`, or a QFD teacher) has no integer form.
    #[error("{} holds a full-precision model (method {method}); export a quantized one (qat, logit-kd, feature-kd or qfd)", dir.display())]
    FullPrecision {
        /// The run directory.
        dir: PathBuf,
        /// Its method.
        method: String,
    },
    /// Trained with `--fp-first-last`: the first and last layers are float.
    #[error("{} was trained with --fp-first-last: its first conv and classifier are float, which an integer-only device cannot run; train without --fp-first-last", dir.display())]
    FpFirstLast {
        /// The run directory.
        dir: PathBuf,
    },
    /// A layer is float (no weight quantizer).
    #[error("layer {layer} has float weights, which an integer-only model cannot hold")]
    FloatLayer {
        /// The layer.
        layer: String,
    },
    /// An op the integer format does not have, or trained values outside what it can represent.
    #[error("layer {layer} cannot be exported: {reason}")]
    Unsupported {
        /// The layer.
        layer: String,
        /// Why.
        reason: String,
    },
    /// An accumulator or a fixed-point constant of a layer could leave the `i32` range.
    #[error("layer {layer} could overflow the i32 accumulator: {reason}")]
    Overflow {
        /// The layer.
        layer: String,
        /// What does not fit.
        reason: String,
    },
    /// The graph builder refused a layer (a shape that does not fit, too many ops).
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Encoding failed.
    #[error("cannot encode the model: {0}")]
    Encode(EncodeError),
}

/// What [`export`] produced.
#[derive(Debug)]
pub struct Exported {
    /// The `.qfdm` bytes.
    pub bytes: Vec<u8>,
    /// The integer graph, with layer names.
    pub graph: Graph,
    /// The configuration the checkpoint was trained with.
    pub config: TrainConfig,
    /// Top-1 test accuracy of the fake-quantized model (recorded in the file).
    pub fake_quant_accuracy: f64,
}

/// The run directory of `path`: the directory itself, or the one holding a checkpoint file given.
pub fn run_dir_of(path: &Path) -> Result<PathBuf, ExportError> {
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).into() };
    if Checkpoint::exists(&dir) {
        Ok(dir)
    } else {
        Err(ExportError::NotACheckpoint { path: path.into() })
    }
}

/// Exports the checkpoint in `path` (a run directory or a file in one), measuring its fake-quant accuracy
/// on the test split of its data set (read from `data_dir` when given, else where training read it).
pub fn export(path: &Path, data_dir: Option<&Path>) -> Result<Exported, ExportError> {
    let dir = run_dir_of(path)?;
    let state = Checkpoint::peek(&dir)?;
    let config = state.config;
    if !config.method.quantized() {
        return Err(ExportError::FullPrecision { dir, method: config.method.to_string() });
    }
    if config.fp_first_last {
        return Err(ExportError::FpFirstLast { dir });
    }
    let data_config =
        TrainConfig { data: data_dir.map(Path::to_path_buf).or(config.data.clone()), ..config.clone() };
    let data = Data::load(&data_config, Device::Cpu)?;
    let trained = load_trained(&dir, &data, Device::Cpu)?;
    let fake_quant_accuracy = crate::train::run::evaluate(
        &trained.net,
        &data.test,
        crate::train::quant::QuantMode::Quantize,
        None,
        &config,
    )
    .acc;
    let meta = GraphMeta {
        arch: config.arch.clone(),
        dataset: config.dataset.to_string(),
        weight_bits: config.wbits,
        act_bits: config.abits,
        mean: data.mean.iter().map(|&m| m as f32).collect(),
        std: vec![data.std as f32; data.mean.len()],
        logit_scale: 1.0,
        class_names: class_names(&data_config)?,
        fake_quant_accuracy: Some(fake_quant_accuracy as f32),
        integer_accuracy: None,
    };
    let graph = integer_graph(&trained.net, &data, meta)?;
    let bytes = encode(&graph)?;
    Ok(Exported { bytes, graph, config, fake_quant_accuracy })
}

/// The data set's class names.
fn class_names(config: &TrainConfig) -> Result<Vec<String>, ExportError> {
    use crate::data::{Dataset, Split};
    let test =
        Dataset::load(config.dataset, Split::Test, config.data.as_deref()).map_err(TrainError::from)?;
    Ok(test.class_names)
}

/// Encodes `graph`, naming the layer when the runtime refuses it.
pub fn encode(graph: &Graph) -> Result<Vec<u8>, ExportError> {
    encode_model_as(graph, crate::PRODUCER).map_err(|e| match e {
        EncodeError::Invalid(LoadError::AccumulatorOverflow { op }) => ExportError::Overflow {
            layer: graph.nodes.get(op as usize).map(|n| n.name.clone()).unwrap_or_else(|| format!("op {op}")),
            reason: "its worst-case accumulator (fan-in x largest input x largest weight + |bias|) exceeds \
                     i32::MAX"
                .into(),
        },
        other => ExportError::Encode(other),
    })
}

/// The integer graph of a trained quantized network, layer by layer as [`Net::integer_ops`] lists them.
pub fn integer_graph(net: &Net, data: &Data, mut meta: GraphMeta) -> Result<Graph, ExportError> {
    if net.has_feature_quantizer() {
        return Err(ExportError::Unsupported {
            layer: "feature_q".into(),
            reason: "a QFD teacher's quantized pooled feature has no integer op; export a student".into(),
        });
    }
    let [c, h, w] = data.input.map(|d| d as usize);
    let mut graph = Graph::new([h, w, c], 8, meta.clone());
    let pixels = ConvInput::Pixels { mean: data.mean.clone(), std: data.std };
    // The grid of every value that holds codes (value 0, the pixels, has none).
    let mut grids: Vec<Option<Grid>> = vec![None];
    let (mut logit_scale, mut pooled_pixels) = (1.0, 0);
    for op in net.integer_ops() {
        let grid = match op {
            IntegerOp::Conv { name, input, layer } => {
                let reads = match grids[input] {
                    Some(g) => ConvInput::Codes(g),
                    None => pixels.clone(),
                };
                let (spec, out) = fold_conv(&name, layer, &reads)?;
                graph.conv2d(&name, ValueId(input), spec)?;
                Some(out)
            }
            IntegerOp::Add { name, inputs, quant, relu } => {
                let grid_of = |v: usize| {
                    grids[v].ok_or_else(|| ExportError::Unsupported {
                        layer: name.clone(),
                        reason: "an input of the add is not quantized".into(),
                    })
                };
                let folded = fold_add(&name, [grid_of(inputs[0])?, grid_of(inputs[1])?], quant, relu)?;
                graph.add(
                    &name,
                    [ValueId(inputs[0]), ValueId(inputs[1])],
                    folded.input_weights,
                    folded.requant,
                    folded.clamp,
                    folded.out.bits,
                )?;
                Some(folded.out)
            }
            IntegerOp::GlobalPool { input } => {
                pooled_pixels = graph.value(ValueId(input)).map(|v| v.shape[0] * v.shape[1]).unwrap_or(0);
                graph.global_sum_pool("pool", ValueId(input))?;
                // The sums keep their input's grid, for the classifier.
                grids[input]
            }
            IntegerOp::Classifier { input, fc } => {
                let grid = grids[input].ok_or_else(|| ExportError::Unsupported {
                    layer: "fc".into(),
                    reason: "the pooled feature is not quantized".into(),
                })?;
                let (spec, scale) = fold_classifier(fc, grid, pooled_pixels)?;
                logit_scale = scale;
                graph.fully_connected("fc", ValueId(input), spec)?;
                None
            }
        };
        grids.push(grid);
    }
    meta.logit_scale = logit_scale as f32;
    graph.meta = meta;
    Ok(graph)
}
