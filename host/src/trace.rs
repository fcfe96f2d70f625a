//! One input through a model, op by op: what `qfd-host trace` writes.
//!
//! [`trace_model`] runs the integer runtime on one input and keeps every op's output;
//! [`write_trace`] writes them as NumPy files beside a `trace.json` index, so that a layer can be compared
//! with the training graph's in a notebook. Ops that requantize (convolutions, fully connected layers,
//! residual adds, average pools) also get their `i32` accumulators before requantization
//! ([`Model::accumulators`], the kernels' own accumulation loop), as a second file.
//!
//! ```no_run
//! use qfd_host::model_file::ModelFile;
//! use qfd_host::trace::{load_input, trace_model, write_trace, Provenance};
//!
//! let file = ModelFile::read("resnet8.qfdm".as_ref())?;
//! let model = file.model()?;
//! let pixels = load_input("image.npy".as_ref(), qfd_host::eval::input_shape(&model))?;
//! let trace = trace_model(&model, &pixels)?;
//! let index = write_trace("trace".as_ref(), &trace, Provenance::file("resnet8.qfdm", "image.npy"))?;
//! println!("predicted class {}", index.predicted);
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use qfd_runtime::format::ElemType;
use qfd_runtime::{LayerOutput, Model, RunError};

use crate::data::Dataset;
use crate::fsutil::{self, FsError};
use crate::npy::{self, Array, Elements, NpyError, NpyFileError};
use crate::table::{Align, Table};

/// The index file written beside the arrays.
pub const INDEX_FILE: &str = "trace.json";
/// The file holding the model input.
pub const INPUT_FILE: &str = "input.npy";

/// Why an input could not be traced or the trace not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FsError),
    /// A `.npy` input file is malformed.
    #[error(transparent)]
    Npy(#[from] NpyFileError),
    /// A `.npy` input is not `uint8` of the model's input shape.
    #[error(
        "{}: the array is {dtype} of shape {shape:?}; the model reads uint8 of shape ({}, {}, {})",
        path.display(), model[0], model[1], model[2]
    )]
    InputArray {
        /// The file.
        path: PathBuf,
        /// Its element type.
        dtype: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// The model's input shape `[H, W, C]`.
        model: [usize; 3],
    },
    /// A raw input file is not exactly one input long.
    #[error(
        "{}: {found} bytes is neither a .npy file nor a raw input of {}x{}x{} = {expected} bytes",
        path.display(), model[0], model[1], model[2]
    )]
    InputLength {
        /// The file.
        path: PathBuf,
        /// Its length.
        found: usize,
        /// `H * W * C` of the model's input.
        expected: usize,
        /// The model's input shape `[H, W, C]`.
        model: [usize; 3],
    },
    /// An image index past the end of the data set.
    #[error("image {index} does not exist: the {dataset} {split} split has {len} images (0 to {})", len.saturating_sub(1))]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The data set's name.
        dataset: String,
        /// Its split.
        split: String,
        /// Its number of images.
        len: usize,
    },
    /// The runtime refused the input.
    #[error("cannot run the model on the input")]
    Run(#[source] RunError),
    /// The output directory could not be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// One op's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTrace {
    /// Position in execution order.
    pub index: usize,
    /// Op kind, e.g. `conv2d` ([`qfd_runtime::OpDesc::kind`]).
    pub kind: &'static str,
    /// Values the op reads (value 0 is the input, value `i + 1` the output of op `i`).
    pub inputs: Vec<u16>,
    /// Bit-width of codes, `None` for `i32` outputs.
    pub bits: Option<u8>,
    /// The output, shape `(H, W, C)`: codes as `uint8`, sums and logits as `int32`.
    pub output: Array,
    /// The `int32` accumulators before requantization, shape `(H, W, C)`; `None` for ops that requantize
    /// nothing (max pool, global sum pool).
    pub accumulators: Option<Array>,
}

/// Everything one inference computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The input codes, shape `(H, W, C)`.
    pub input: Array,
    /// One entry per op, in execution order.
    pub layers: Vec<LayerTrace>,
    /// The logits (the last op's output).
    pub logits: Vec<i32>,
    /// The predicted class (the first largest logit).
    pub predicted: usize,
    /// The model's class names (empty if it has none).
    pub class_names: Vec<String>,
}

/// Runs the model on `input` (`H x W x C` codes) and keeps every op's output.
pub fn trace_model(model: &Model<'_>, input: &[u8]) -> Result<Trace, TraceError> {
    let desc = model.desc();
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    let mut layers = Vec::with_capacity(desc.ops.len());
    let predicted = model
        .run_traced(input, &mut arena, &mut logits, |index, op, output| {
            let value = &desc.values[index + 1];
            let bits = match value.elem {
                ElemType::Codes { bits } => Some(bits),
                ElemType::I32 => None,
            };
            let data = match output {
                LayerOutput::Codes(codes) => Elements::U8((0..value.elems()).map(|i| codes.get(i)).collect()),
                LayerOutput::I32Le(bytes) => Elements::I32(le_i32s(bytes)),
            };
            let shape = value.shape.map(usize::from).to_vec();
            let output = Array::new(shape, data).expect("the runtime writes exactly its value's elements");
            layers.push(LayerTrace {
                index,
                kind: op.kind(),
                inputs: op.inputs().to_vec(),
                bits,
                output,
                accumulators: None,
            });
        })
        .map_err(TraceError::Run)?;
    let input_shape = model.input_shape().map(usize::from).to_vec();
    let input =
        Array::new(input_shape, Elements::U8(input.to_vec())).expect("the runtime checked the input length");

    // Each op's accumulators, recomputed from the values it read (all kept above).
    let bytes: Vec<Vec<u8>> = std::iter::once(&input)
        .chain(layers.iter().map(|l| &l.output))
        .zip(&desc.values)
        .map(|(array, value)| stored_bytes(array, value.elem))
        .collect();
    for layer in &mut layers {
        let value = &desc.values[layer.index + 1];
        let mut acc = vec![0i32; value.elems()];
        let n = model
            .accumulators(layer.index, |v| bytes[v as usize].as_slice(), &mut acc)
            .map_err(TraceError::Run)?;
        if n > 0 {
            let shape = value.shape.map(usize::from).to_vec();
            layer.accumulators =
                Some(Array::new(shape, Elements::I32(acc)).expect("one accumulator per output element"));
        }
    }
    let class_names = desc.output.class_names.split_terminator('\n').map(String::from).collect();
    Ok(Trace { input, layers, logits, predicted, class_names })
}

/// A value's bytes as the runtime stores them: codes packed at their bit-width, `i32` little-endian.
fn stored_bytes(array: &Array, elem: ElemType) -> Vec<u8> {
    match (array.data(), elem) {
        (Elements::U8(codes), ElemType::Codes { bits }) => {
            let mut out = vec![0u8; qfd_runtime::codes::packed_len(codes.len(), bits)];
            qfd_runtime::codes::pack_codes(codes, bits, &mut out);
            out
        }
        (Elements::U8(codes), ElemType::I32) => codes.clone(),
        (Elements::I32(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn le_i32s(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Image `index` of `data`, or an error naming the range of valid indices.
pub fn dataset_image(data: &Dataset, index: usize) -> Result<&[u8], TraceError> {
    if index >= data.len() {
        return Err(TraceError::IndexOutOfRange {
            index,
            dataset: data.kind.to_string(),
            split: data.split.to_string(),
            len: data.len(),
        });
    }
    Ok(data.image(index))
}

/// Reads a model input of shape `[H, W, C]` from a file: a `.npy` array of `uint8` of shape `(H, W, C)` (or
/// `(H, W)` when `C` is 1), recognised by its `.npy` name or its magic, or else exactly `H * W * C` raw bytes.
pub fn load_input(path: &Path, shape: [usize; 3]) -> Result<Vec<u8>, TraceError> {
    let bytes = fsutil::read(path)?;
    let named_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let expected = shape.iter().product();
    if !named_npy && !bytes.starts_with(npy::MAGIC) {
        if bytes.len() != expected {
            return Err(TraceError::InputLength {
                path: path.into(),
                found: bytes.len(),
                expected,
                model: shape,
            });
        }
        return Ok(bytes);
    }
    let invalid = |source: NpyError| NpyFileError::Invalid { path: path.into(), source };
    let array = Array::from_bytes(&bytes).map_err(invalid)?;
    let shape_ok = array.shape() == shape || (shape[2] == 1 && array.shape() == &shape[..2]);
    match array.data() {
        Elements::U8(pixels) if shape_ok => Ok(pixels.clone()),
        data => Err(TraceError::InputArray {
            path: path.into(),
            dtype: data.dtype_name(),
            shape: array.shape().to_vec(),
            model: shape,
        }),
    }
}

/// Where the traced input came from, recorded in `trace.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// The model file.
    pub model: String,
    /// The input: a file, or a data set image such as `fashion-mnist test image 17`.
    pub source: String,
    /// The input's label, if it came from a data set.
    pub label: Option<usize>,
    /// The label's class name, if known.
    pub label_name: Option<String>,
}

impl Provenance {
    /// An input read from the file `input`.
    pub fn file(model: &str, input: &str) -> Self {
        Provenance { model: model.into(), source: input.into(), label: None, label_name: None }
    }

    /// Image `index` of `data`.
    pub fn dataset_image(model: &str, data: &Dataset, index: usize) -> Self {
        let label = data.labels.get(index).map(|&l| usize::from(l));
        Provenance {
            model: model.into(),
            source: format!("{} {} image {index}", data.kind, data.split),
            label,
            label_name: label.and_then(|l| data.class_names.get(l).cloned()),
        }
    }
}

/// One written array, as listed in `trace.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorEntry {
    /// File name inside the trace directory.
    pub file: String,
    /// Shape `[H, W, C]`.
    pub shape: Vec<usize>,
    /// `uint8` or `int32`.
    pub dtype: &'static str,
    /// Bit-width of codes, `null` for `int32` values (and 8 for the input pixels).
    pub bits: Option<u8>,
    /// Smallest value.
    pub min: Option<i64>,
    /// Largest value.
    pub max: Option<i64>,
}

impl TensorEntry {
    fn new(file: String, array: &Array, bits: Option<u8>) -> Self {
        let (min, max) = array.data().min_max().unzip();
        TensorEntry { file, shape: array.shape().to_vec(), dtype: array.data().dtype_name(), bits, min, max }
    }
}

/// One op, as listed in `trace.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpEntry {
    /// Position in execution order.
    pub index: usize,
    /// Op kind.
    pub kind: &'static str,
    /// Values read (0 is the input, `i + 1` the output of op `i`).
    pub inputs: Vec<u16>,
    /// Its output.
    #[serde(flatten)]
    pub output: TensorEntry,
    /// Its accumulators before requantization, for ops that requantize.
    pub accumulators: Option<TensorEntry>,
}

/// The content of `trace.json`. Field names are stable, for scripts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceIndex {
    /// Where the input came from.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// The predicted class.
    pub predicted: usize,
    /// Its name, if the model has class names.
    pub predicted_name: Option<String>,
    /// The logits.
    pub logits: Vec<i32>,
    /// The input array.
    pub input: TensorEntry,
    /// One entry per op, in execution order.
    pub ops: Vec<OpEntry>,
}

impl TraceIndex {
    /// A table of the ops and a line on the prediction, for the terminal.
    pub fn to_text(&self, dir: &Path) -> String {
        let mut t = Table::new(&[
            ("#", Align::Right),
            ("op", Align::Left),
            ("shape", Align::Right),
            ("dtype", Align::Left),
            ("bits", Align::Right),
            ("min", Align::Right),
            ("max", Align::Right),
            ("file", Align::Left),
        ]);
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let rows = std::iter::once(("-".to_string(), "input", &self.input))
            .chain(self.ops.iter().map(|op| (op.index.to_string(), op.kind, &op.output)));
        for (index, kind, e) in rows {
            let shape: Vec<String> = e.shape.iter().map(usize::to_string).collect();
            t.row(vec![
                index,
                kind.to_string(),
                shape.join("x"),
                e.dtype.to_string(),
                opt(e.bits.map(i64::from)),
                opt(e.min),
                opt(e.max),
                e.file.clone(),
            ]);
        }
        let mut out = t.render("");
        let name = |n: &Option<String>| n.as_ref().map_or_else(String::new, |n| format!(" ({n})"));
        let _ = write!(out, "\ninput      {}", self.provenance.source);
        if let Some(label) = self.provenance.label {
            let _ = write!(out, ", label {label}{}", name(&self.provenance.label_name));
        }
        let _ = writeln!(out, "\npredicted  class {}{}", self.predicted, name(&self.predicted_name));
        let files = self.ops.len() + 2 + self.ops.iter().filter(|op| op.accumulators.is_some()).count();
        let _ = writeln!(out, "wrote      {files} files to {} (index: {INDEX_FILE})", dir.display());
        out
    }
}

/// The file name of op `index` of `ops`: the zero-padded index (at least two digits) and the op kind.
pub fn op_file_name(index: usize, ops: usize, kind: &str) -> String {
    let width = ops.saturating_sub(1).to_string().len().max(2);
    format!("{index:0width$}_{kind}.npy")
}

/// The file of an op's accumulators, beside its output file: `03_conv2d.npy` -> `03_conv2d.acc.npy`.
pub fn accumulator_file_name(op_file: &str) -> String {
    format!("{}.acc.npy", op_file.trim_end_matches(".npy"))
}

/// Writes the trace into `dir` (created if missing): [`INPUT_FILE`], one [`op_file_name`] per op (and its
/// [`accumulator_file_name`] where it has accumulators), then
/// [`INDEX_FILE`] last, so that a complete index means every array is there. Files of the same names are
/// replaced atomically; other files are left alone.
pub fn write_trace(dir: &Path, trace: &Trace, provenance: Provenance) -> Result<TraceIndex, TraceError> {
    std::fs::create_dir_all(dir).map_err(|source| TraceError::CreateDir { path: dir.into(), source })?;
    npy::write(&dir.join(INPUT_FILE), &trace.input)?;
    let mut ops = Vec::with_capacity(trace.layers.len());
    for layer in &trace.layers {
        let file = op_file_name(layer.index, trace.layers.len(), layer.kind);
        npy::write(&dir.join(&file), &layer.output)?;
        let accumulators = match &layer.accumulators {
            Some(acc) => {
                let acc_file = accumulator_file_name(&file);
                npy::write(&dir.join(&acc_file), acc)?;
                Some(TensorEntry::new(acc_file, acc, None))
            }
            None => None,
        };
        ops.push(OpEntry {
            index: layer.index,
            kind: layer.kind,
            inputs: layer.inputs.clone(),
            output: TensorEntry::new(file, &layer.output, layer.bits),
            accumulators,
        });
    }
    let index = TraceIndex {
        provenance,
        predicted: trace.predicted,
        predicted_name: trace.class_names.get(trace.predicted).cloned(),
        logits: trace.logits.clone(),
        input: TensorEntry::new(INPUT_FILE.into(), &trace.input, Some(8)),
        ops,
    };
    // Serializing plain structs of strings and numbers cannot fail.
    let json = serde_json::to_string_pretty(&index).expect("the index serializes") + "\n";
    fsutil::write_atomic(&dir.join(INDEX_FILE), json.as_bytes())?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_files_sort_in_execution_order() {
        assert_eq!(op_file_name(3, 12, "conv2d"), "03_conv2d.npy");
        assert_eq!(op_file_name(7, 101, "add"), "007_add.npy");
        assert_eq!(op_file_name(0, 1, "fully_connected"), "00_fully_connected.npy");
    }

    #[test]
    fn inputs_are_read_as_npy_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..12).collect();
        let raw = dir.path().join("x.bin");
        std::fs::write(&raw, &pixels).unwrap();
        assert_eq!(load_input(&raw, [2, 2, 3]).unwrap(), pixels);
        let err = load_input(&raw, [2, 2, 4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: 12 bytes is neither a .npy file nor a raw input of 2x2x4 = 16 bytes", raw.display())
        );

        // A .npy file is recognised by its magic whatever its name; (H, W) is accepted for one channel.
        let grey = dir.path().join("grey");
        let array = Array::new(vec![3, 4], Elements::U8(pixels.clone())).unwrap();
        npy::write(&grey, &array).unwrap();
        assert_eq!(load_input(&grey, [3, 4, 1]).unwrap(), pixels);
        let err = load_input(&grey, [4, 3, 1]).unwrap_err().to_string();
        assert!(err.contains("uint8 of shape [3, 4]; the model reads uint8 of shape (4, 3, 1)"), "{err}");

        let ints = dir.path().join("ints.npy");
        npy::write(&ints, &Array::new(vec![3, 4, 1], Elements::I32(vec![0; 12])).unwrap()).unwrap();
        assert!(load_input(&ints, [3, 4, 1]).unwrap_err().to_string().contains("int32"));

        // A file named .npy must be one.
        let fake = dir.path().join("fake.npy");
        std::fs::write(&fake, &pixels).unwrap();
        let err = load_input(&fake, [2, 2, 3]).unwrap_err();
        assert!(matches!(err, TraceError::Npy(NpyFileError::Invalid { source: NpyError::BadMagic, .. })));
    }
}
