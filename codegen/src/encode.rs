//! Writing `.qfdm` files.

use qfd_runtime::format::{
    FileHeader, InputSpec, Metadata, ModelDesc, OpDesc, OutputSpec, ValueDesc, FORMAT_MAJOR, FORMAT_MINOR,
    MAGIC, MAX_OPS,
};
use qfd_runtime::{LoadError, Model, PAYLOAD_CRC};

use crate::graph::Graph;
use crate::plan::{lifetimes, plan};

/// The producer string written into every file.
pub const PRODUCER: &str = concat!("qfd-codegen ", env!("CARGO_PKG_VERSION"));

/// Why a graph could not be written as a model file.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The graph is larger than the format allows.
    #[error("the model has {0} ops; the format allows at most {MAX_OPS}")]
    TooManyOps(usize),
    /// A value or the arena exceeds the format's 32-bit sizes.
    #[error("{0} does not fit the format's limits")]
    TooLarge(&'static str),
    /// postcard refused to encode (should not happen).
    #[error("encoding failed: {0}")]
    Postcard(#[from] postcard::Error),
    /// The runtime refused the encoded file: the graph breaks a rule the builder does not check, such as an
    /// accumulator that could overflow.
    #[error("the runtime refuses the encoded model: {0}")]
    Invalid(LoadError),
}

/// Plans the arena, encodes the graph and proves the result loads; the file names [`PRODUCER`] as its writer.
pub fn encode_model(graph: &Graph) -> Result<Vec<u8>, EncodeError> {
    encode_model_as(graph, PRODUCER)
}

/// [`encode_model`] naming another writer, e.g. `qfd-host 0.1.0`.
pub fn encode_model_as(graph: &Graph, producer: &str) -> Result<Vec<u8>, EncodeError> {
    if graph.nodes.len() > MAX_OPS {
        return Err(EncodeError::TooManyOps(graph.nodes.len()));
    }
    let ops: Vec<OpDesc<'_>> = graph.nodes.iter().map(|n| attach(&n.op, &n.tables)).collect();
    let infos = graph.values();
    let sizes: Vec<usize> = infos.iter().map(|v| v.bytes()).collect();
    let arena = plan(&sizes, &lifetimes(&ops));

    let mut values = heapless::Vec::new();
    for (info, &offset) in infos.iter().zip(&arena.offsets) {
        let shape = info.shape.map(|d| d as u16);
        if info.shape.iter().any(|&d| d > u16::MAX as usize) {
            return Err(EncodeError::TooLarge("a tensor dimension"));
        }
        let arena_offset = u32::try_from(offset).map_err(|_| EncodeError::TooLarge("the arena"))?;
        // Capacity is MAX_OPS + 1 and the op count was checked above.
        let _ = values.push(ValueDesc { shape, elem: info.elem, arena_offset });
    }
    let meta = &graph.meta;
    let class_names = meta.class_names.join("\n");
    let desc = ModelDesc {
        input: InputSpec { mean: floats(&meta.mean)?, std: floats(&meta.std)? },
        output: OutputSpec { logit_scale: meta.logit_scale, class_names: &class_names },
        meta: Metadata {
            arch: &meta.arch,
            dataset: &meta.dataset,
            weight_bits: meta.weight_bits,
            act_bits: meta.act_bits,
            fake_quant_accuracy: meta.fake_quant_accuracy,
            integer_accuracy: meta.integer_accuracy,
        },
        values,
        ops: ops.into_iter().collect(),
        arena_bytes: u32::try_from(arena.arena_bytes).map_err(|_| EncodeError::TooLarge("the arena"))?,
    };
    let payload = postcard::to_allocvec(&desc)?;
    let header = FileHeader {
        magic: MAGIC,
        format_major: FORMAT_MAJOR,
        format_minor: FORMAT_MINOR,
        producer,
        payload_crc32: PAYLOAD_CRC.checksum(&payload),
        payload: &payload,
    };
    let bytes = postcard::to_allocvec(&header)?;
    Model::load(&bytes).map_err(EncodeError::Invalid)?;
    Ok(bytes)
}

fn floats(v: &[f32]) -> Result<heapless::Vec<f32, 4>, EncodeError> {
    heapless::Vec::from_slice(v)
        .map_err(|_| EncodeError::TooLarge("the input normalisation (4 channels at most)"))
}

/// The op with its table slices pointing at `tables`, in order.
fn attach<'a>(op: &OpDesc<'static>, tables: &'a [Vec<u8>]) -> OpDesc<'a> {
    let mut op: OpDesc<'a> = op.clone();
    for (slot, bytes) in op.tables_mut().into_iter().zip(tables) {
        *slot = bytes;
    }
    op
}
