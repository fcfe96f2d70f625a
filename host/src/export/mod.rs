//! `qfd-host export`: a trained quantized checkpoint becomes an integer `.qfdm` model.
//!
//! [`Net::integer_ops`] lists the integer ops the network becomes; [`fold`] turns each trained layer into its
//! integer form (weights as codes, BatchNorm / `|alpha|` / ReLU / next quantizer as per-channel
//! requantization, input normalisation into the first layer); `qfd-codegen` packs the weights, plans the
//! arena and encodes the file, which the runtime then loads, proving among other things that no
//! accumulator can overflow `i32`. The result is deterministic: the same checkpoint gives the same bytes.

pub mod fold;
pub mod transformer;

use std::path::{Path, PathBuf};

use qfd_codegen::encode::{encode_model_as, EncodeError};
use qfd_codegen::graph::{Graph, GraphError, GraphMeta, ValueId};
use qfd_runtime::LoadError;
use tch::Device;

use crate::data::{Dataset, Split};
use crate::train::batches::DeviceData;
use crate::train::checkpoint::{Checkpoint, CheckpointError, STATE_FILE};
use crate::train::config::TrainConfig;
use crate::train::models::{IntegerOp, Net};
use crate::train::quant::QuantMode;
use crate::train::run::{load_trained, predictions, Data, TrainError};
use fold::{fold_add, fold_classifier, fold_conv, ConvInput, Grid};
use transformer::{
    fold_attention_scores, fold_attention_values, fold_layer_norm, fold_lookup, fold_softmax,
    fold_stream_add, StreamGrid, StreamInput,
};

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
    /// Top-1 test accuracy of the integer model (recorded in the file).
    pub integer_accuracy: f64,
    /// Fraction of test images where both predict the same class.
    pub agreement: f64,
    /// Test images both were run on.
    pub images: usize,
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

/// A quantized checkpoint loaded for export, with its data.
struct Loaded {
    config: TrainConfig,
    data: Data,
    trained: crate::train::run::Trained,
    /// The first `limit` images of the whole test split.
    test: Dataset,
}

/// Loads the quantized checkpoint in `path`, refusing what has no integer form.
fn load(path: &Path, data_dir: Option<&Path>, limit: Option<usize>) -> Result<Loaded, ExportError> {
    let dir = run_dir_of(path)?;
    let config = Checkpoint::peek(&dir)?.config;
    if !config.method.quantized() {
        return Err(ExportError::FullPrecision { dir, method: config.method.to_string() });
    }
    if config.fp_first_last {
        return Err(ExportError::FpFirstLast { dir });
    }
    let config = TrainConfig { data: data_dir.map(Path::to_path_buf).or(config.data.clone()), ..config };
    // The training split as trained (it fixes the normalisation), and the test split whatever the subset.
    let data = Data::load(&config, Device::Cpu)?;
    let trained = load_trained(&dir, &data, Device::Cpu)?;
    let mut test =
        Dataset::load(config.dataset, Split::Test, config.data.as_deref()).map_err(TrainError::from)?;
    if let Some(n) = limit {
        test.truncate(n);
    }
    Ok(Loaded { config, data, trained, test })
}

/// Exports the checkpoint in `path` (a run directory or a file in one). Both the fake-quantized and the
/// integer model run on the first `limit` test images (all when `None`) of its data set (read from
/// `data_dir` when given, else where training read it); both accuracies go into the file's metadata.
pub fn export(path: &Path, data_dir: Option<&Path>, limit: Option<usize>) -> Result<Exported, ExportError> {
    export_with(path, data_dir, limit, crate::eval::EvalEngine::default())
}

/// [`export`], with the integer model's accuracy measured by `engine`.
pub fn export_with(
    path: &Path,
    data_dir: Option<&Path>,
    limit: Option<usize>,
    engine: crate::eval::EvalEngine,
) -> Result<Exported, ExportError> {
    let Loaded { config, data, trained, test, .. } = load(path, data_dir, limit)?;
    let fake = predictions(&trained.net, &DeviceData::from_dataset(&test, Device::Cpu), QuantMode::Quantize);
    let meta = GraphMeta {
        arch: config.arch.clone(),
        dataset: config.dataset.to_string(),
        weight_bits: config.wbits,
        act_bits: config.abits,
        mean: data.mean.iter().map(|&m| m as f32).collect(),
        std: vec![data.std as f32; data.mean.len()],
        logit_scale: 1.0,
        class_names: test.class_names.clone(),
        fake_quant_accuracy: Some(accuracy(&fake, &test.labels) as f32),
        integer_accuracy: None,
    };
    let mut graph = integer_graph(&trained.net, &data, meta)?;
    // The integer model's own predictions, recorded in its metadata.
    let integer = {
        let bytes = encode(&graph)?;
        let model =
            qfd_runtime::Model::load(&bytes).map_err(|e| ExportError::Encode(EncodeError::Invalid(e)))?;
        crate::eval::evaluate(&model, &test, engine, &|_| {})
            .map_err(|e| ExportError::Unsupported { layer: "model".into(), reason: e.to_string() })?
            .predictions
    };
    graph.meta.integer_accuracy = Some(accuracy(&integer, &test.labels) as f32);
    let bytes = encode(&graph)?;
    let agreement =
        fake.iter().zip(&integer).filter(|(a, b)| a == b).count() as f64 / fake.len().max(1) as f64;
    Ok(Exported {
        bytes,
        graph,
        config,
        fake_quant_accuracy: accuracy(&fake, &test.labels),
        integer_accuracy: accuracy(&integer, &test.labels),
        agreement,
        images: test.len(),
    })
}

/// Fraction of `predictions` equal to `labels`.
fn accuracy(predictions: &[usize], labels: &[u8]) -> f64 {
    let correct = predictions.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count();
    correct as f64 / labels.len().max(1) as f64
}

/// The fake-quantized model's predicted class for each of the first `limit` test images (all when `None`)
/// of the checkpoint's data set, for comparing with the integer model.
pub fn fake_quant_predictions(
    path: &Path,
    data_dir: Option<&Path>,
    limit: Option<usize>,
) -> Result<Vec<usize>, ExportError> {
    let loaded = load(path, data_dir, limit)?;
    Ok(predictions(
        &loaded.trained.net,
        &DeviceData::from_dataset(&loaded.test, Device::Cpu),
        QuantMode::Quantize,
    ))
}

/// Encodes `graph`, naming the layer when the runtime refuses it.
pub fn encode(graph: &Graph) -> Result<Vec<u8>, ExportError> {
    let layer =
        |op: u16| graph.nodes.get(op as usize).map(|n| n.name.clone()).unwrap_or_else(|| format!("op {op}"));
    encode_model_as(graph, crate::PRODUCER).map_err(|e| match e {
        EncodeError::Invalid(LoadError::AccumulatorOverflow { op }) => ExportError::Overflow {
            layer: layer(op),
            reason: "its worst-case accumulator (fan-in x largest input x largest weight, plus |offset| for \
                     logits) exceeds i32::MAX"
                .into(),
        },
        EncodeError::Invalid(LoadError::OffsetOutOfRange { op }) => ExportError::Overflow {
            layer: layer(op),
            reason: "its requantization offset does not fit the fixed-point format (|offset| >= 2^62)".into(),
        },
        other => ExportError::Encode(other),
    })
}

/// How a value of the integer graph holds its codes, as the ops that read it need to know.
#[derive(Debug, Clone)]
enum Stored {
    /// Raw pixels (the input), or logits: no activation grid.
    Raw,
    /// An ordinary grid.
    Grid(Grid),
    /// The transformer's residual stream.
    Stream(StreamGrid),
    /// Attention probability codes.
    Probs,
}

impl Stored {
    /// The ordinary grid of a value read by `layer`, or why it has none.
    fn grid(&self, layer: &str) -> Result<Grid, ExportError> {
        match self {
            Stored::Grid(g) => Ok(*g),
            _ => Err(ExportError::Unsupported {
                layer: layer.into(),
                reason: "it reads a value that is not on an ordinary quantization grid".into(),
            }),
        }
    }
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
    let pixels =
        ConvInput::Pixels { mean: data.mean.clone(), std: data.std, padding: net.stem_padding() as u8 };
    // How each value's codes read (value 0, the pixels, has no codes).
    let mut stored: Vec<Stored> = vec![Stored::Raw];
    let (mut logit_scale, mut pooled_pixels) = (1.0, 0);
    let shape_of = |graph: &Graph, v: usize| graph.value(ValueId(v)).map(|v| v.shape).unwrap_or([0; 3]);
    for op in net.integer_ops() {
        let out = match op {
            IntegerOp::Conv { name, input, layer } => {
                let reads = match &stored[input] {
                    Stored::Raw => pixels.clone(),
                    other => ConvInput::Codes(other.grid(&name)?),
                };
                let (spec, out) = fold_conv(&name, layer, &reads)?;
                graph.conv2d(&name, ValueId(input), spec)?;
                Stored::Grid(out)
            }
            IntegerOp::Add { name, inputs, quant, relu } => {
                let [a, b] = [stored[inputs[0]].grid(&name)?, stored[inputs[1]].grid(&name)?];
                let folded = fold_add(&name, [a, b], quant, relu)?;
                graph.add(
                    &name,
                    [ValueId(inputs[0]), ValueId(inputs[1])],
                    folded.input_weights,
                    folded.requant,
                    folded.clamp,
                    folded.out.bits,
                )?;
                Stored::Grid(folded.out)
            }
            IntegerOp::StreamAdd { name, inputs, quant } => {
                let a = match &stored[inputs[0]] {
                    Stored::Stream(s) => StreamInput::Stream(s.clone()),
                    other => StreamInput::Grid(other.grid(&name)?),
                };
                let f = fold_stream_add(&name, &a, stored[inputs[1]].grid(&name)?, quant)?;
                graph.channel_add(
                    &name,
                    [ValueId(inputs[0]), ValueId(inputs[1])],
                    f.input_weights,
                    f.shifts,
                    &f.requant,
                    (f.clamp, f.out.bits),
                )?;
                Stored::Stream(f.out)
            }
            IntegerOp::LayerNorm { name, input, norm } => {
                let Stored::Stream(stream) = &stored[input] else {
                    return Err(ExportError::Unsupported {
                        layer: name,
                        reason: "it does not read the stream".into(),
                    });
                };
                let (spec, out) = fold_layer_norm(&name, stream, norm)?;
                graph.layer_norm(&name, ValueId(input), spec)?;
                Stored::Grid(out)
            }
            IntegerOp::AttentionScores { name, inputs, heads, quant } => {
                let qk = [stored[inputs[0]].grid(&name)?, stored[inputs[1]].grid(&name)?];
                let channels = shape_of(&graph, inputs[0])[2];
                let (zeros, spec, out) = fold_attention_scores(&name, qk, heads, channels, quant)?;
                graph.attention_scores(&name, [ValueId(inputs[0]), ValueId(inputs[1])], zeros, spec)?;
                Stored::Grid(out)
            }
            IntegerOp::Softmax { name, input, probs } => {
                let tokens = shape_of(&graph, input)[2];
                let exp = fold_softmax(&name, stored[input].grid(&name)?, tokens)?;
                graph.softmax(&name, ValueId(input), exp, probs)?;
                Stored::Probs
            }
            IntegerOp::AttentionValues { name, inputs, heads, probs, quant } => {
                let v = stored[inputs[1]].grid(&name)?;
                let (zero, spec, out) = fold_attention_values(&name, v, heads, probs, quant)?;
                graph.attention_values(&name, [ValueId(inputs[0]), ValueId(inputs[1])], probs, zero, spec)?;
                Stored::Grid(out)
            }
            IntegerOp::Lookup { name, input, function, quant } => {
                let (table, out) = fold_lookup(&name, stored[input].grid(&name)?, function, quant)?;
                graph.lookup(&name, ValueId(input), table, out.bits)?;
                Stored::Grid(out)
            }
            IntegerOp::GlobalPool { input } => {
                pooled_pixels = graph.value(ValueId(input)).map(|v| v.shape[0] * v.shape[1]).unwrap_or(0);
                graph.global_sum_pool("pool", ValueId(input))?;
                // The sums keep their input's grid, for the classifier.
                stored[input].clone()
            }
            IntegerOp::Classifier { input, fc } => {
                let (spec, scale) = fold_classifier(fc, stored[input].grid("fc")?, pooled_pixels)?;
                logit_scale = scale;
                graph.fully_connected("fc", ValueId(input), spec)?;
                Stored::Raw
            }
        };
        stored.push(out);
    }
    meta.logit_scale = logit_scale as f32;
    graph.meta = meta;
    Ok(graph)
}
