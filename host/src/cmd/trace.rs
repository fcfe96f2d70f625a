use std::path::{Path, PathBuf};

use qfd_host::eval::{check_input_shape, input_shape};
use qfd_host::model_file::ModelFile;
use qfd_host::trace::{dataset_image, load_input, trace_model, write_trace, Provenance};

use super::eval::DataArgs;

/// Run one input through a model and write every op's output as a NumPy .npy file.
///
/// --input is the index of a test image of the data set (--dataset, else the one named in the model's
/// metadata), or a file: a .npy array of uint8 of the model's input shape (H, W, C) (or (H, W) for one
/// channel), or exactly H*W*C raw bytes. A file whose name is a number is read as an index: write it as ./N.
///
/// DIR (created if missing) receives input.npy, NN_<op>.npy for op NN (activation codes as uint8 of shape
/// (H, W, C); global sum pool sums and logits as int32), and trace.json listing each op's kind, shape, dtype,
/// bits, file and min/max. Ops that requantize (conv, fully connected, add, average pool) also get
/// NN_<op>.acc.npy: their int32 accumulators before requantization. Files of these names are replaced,
/// other files are left alone.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// The model file.
    model: PathBuf,
    /// A test image index, or a .npy or raw file.
    #[arg(long, value_name = "INDEX|FILE")]
    input: String,
    #[command(flatten)]
    data: DataArgs,
    /// Directory for the arrays and trace.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let file = ModelFile::read(&self.model)?;
        let model = file.model()?;
        let name = self.model.display().to_string();
        let (pixels, provenance) = match self.input.parse::<usize>() {
            Ok(index) => {
                let data = self.data.load_test(&model)?;
                check_input_shape(&model, &data)?;
                (dataset_image(&data, index)?.to_vec(), Provenance::dataset_image(&name, &data, index))
            }
            Err(_) => {
                let path = Path::new(&self.input);
                (load_input(path, input_shape(&model))?, Provenance::file(&name, &self.input))
            }
        };
        let trace = trace_model(&model, &pixels)?;
        let index = write_trace(&self.out, &trace, provenance)?;
        super::print(&index.to_text(&self.out))
    }
}
