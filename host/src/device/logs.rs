//! The device's defmt log: binary frames that only the firmware's ELF (its `.defmt` table) can turn
//! back into text.

use std::path::Path;

/// The log as text lines, or one line saying why it cannot be decoded.
pub fn decode(elf: &Path, log: &[u8]) -> Vec<String> {
    if log.is_empty() {
        return Vec::new();
    }
    let elf_bytes = match std::fs::read(elf) {
        Ok(b) => b,
        Err(e) => return vec![format!("({} bytes of log; cannot read {}: {e})", log.len(), elf.display())],
    };
    let table = match defmt_decoder::Table::parse(&elf_bytes) {
        Ok(Some(t)) => t,
        Ok(None) => return vec![format!("({} bytes of log; the firmware has no defmt table)", log.len())],
        Err(e) => return vec![format!("({} bytes of log; bad defmt table: {e})", log.len())],
    };
    let mut decoder = table.new_stream_decoder();
    decoder.received(log);
    let mut lines = Vec::new();
    loop {
        match decoder.decode() {
            Ok(frame) => {
                let level = frame.level().map(|l| l.as_str().to_uppercase()).unwrap_or_default();
                lines.push(format!("{level:5} {}", frame.display_message()));
            }
            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
            Err(defmt_decoder::DecodeError::Malformed) => {
                lines.push("(the rest of the log is malformed)".into());
                break;
            }
        }
    }
    lines
}

/// The last lines of the log, formatted to follow an error message; empty if there is no log.
pub fn tail_hint(elf: &Path, log: &[u8]) -> String {
    let lines = decode(elf, log);
    if lines.is_empty() {
        return String::new();
    }
    let tail: Vec<String> = lines.iter().rev().take(8).rev().map(|l| format!("  {l}")).collect();
    format!("; the device's last log lines:\n{}", tail.join("\n"))
}
