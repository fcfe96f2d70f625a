use std::path::PathBuf;

use qfd_host::model_file::ModelFile;
use qfd_host::report::ModelReport;

/// Describe a .qfdm model: header, totals and one row per layer.
///
/// The file is validated exactly as a board would do it; a refused file is reported with the reason.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// The model file.
    model: PathBuf,
    /// Print one JSON object instead of text (field names are stable, for scripts).
    #[arg(long)]
    json: bool,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let file = ModelFile::read(&self.model)?;
        let report = ModelReport::from_file(&file)?;
        if self.json {
            super::print(&(report.to_json()? + "\n"))
        } else {
            super::print(&report.to_text())
        }
    }
}
