use std::path::PathBuf;

use qfd_boards::Board;
use qfd_host::device::Fit;
use qfd_host::model_file::ModelFile;
use qfd_host::report::ModelReport;

/// Describe a .qfdm model: header, totals and one row per layer.
///
/// The file is validated exactly as a board would do it; a refused file is reported with the reason.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// The model file.
    model: PathBuf,
    /// Also say whether the model fits this board's flash and RAM, and by how much (see `qfd-host run`).
    #[arg(long)]
    board: Option<String>,
    /// Print one JSON object instead of text (field names are stable, for scripts).
    #[arg(long)]
    json: bool,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let file = ModelFile::read(&self.model)?;
        let report = ModelReport::from_file(&file)?;
        let fit = match &self.board {
            Some(name) => {
                let board = Board::load(&qfd_boards::boards_dir(), name)?;
                let arena = qfd_host::device::firmware::arena_bytes(&board, &file.model()?);
                Some(Fit::estimate(&board, file.len() as u64, arena))
            }
            None => None,
        };
        if self.json {
            let mut json: serde_json::Value = serde_json::from_str(&report.to_json()?)?;
            if let Some(fit) = &fit {
                json["board"] = serde_json::to_value(fit)?;
                json["board"]["fits"] = fit.fits().into();
            }
            super::print(&(serde_json::to_string_pretty(&json)? + "\n"))
        } else {
            let fit = fit.map(|f| format!("\n{}", f.to_text())).unwrap_or_default();
            super::print(&(report.to_text() + &fit))
        }
    }
}
