//! Just enough of ELF32 (little-endian, as every Cortex-M image is) to measure a firmware image: the
//! address and size of each allocated section.

use std::path::{Path, PathBuf};

/// A section that occupies memory on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name, e.g. `.text`.
    pub name: String,
    /// Run-time address.
    pub addr: u32,
    /// Size in bytes.
    pub size: u32,
    /// Whether the image holds its bytes (`.bss` has none: it is zeroed at start-up).
    pub has_data: bool,
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: not a readable 32-bit little-endian ELF image ({reason})", path.display())]
pub struct ElfError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

const SHF_ALLOC: u32 = 0x2;
const SHT_NOBITS: u32 = 8;

/// The allocated sections of the ELF32 image `bytes` (read from `path`, named in errors).
pub fn sections(path: &Path, bytes: &[u8]) -> Result<Vec<Section>, ElfError> {
    let err = |reason: &str| ElfError { path: path.into(), reason: reason.into() };
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 1, 1][..]) {
        return Err(err("bad magic, class or byte order"));
    }
    let shoff = u32_at(0x20).ok_or_else(|| err("truncated header"))? as usize;
    let shentsize = u16_at(0x2e).ok_or_else(|| err("truncated header"))? as usize;
    let shnum = u16_at(0x30).ok_or_else(|| err("truncated header"))? as usize;
    let shstrndx = u16_at(0x32).ok_or_else(|| err("truncated header"))? as usize;
    if shentsize < 40 {
        return Err(err("section header entries are too small"));
    }
    let header = |i: usize| -> Option<[u32; 6]> {
        let o = shoff.checked_add(i.checked_mul(shentsize)?)?;
        // name, type, flags, addr, offset, size
        Some([u32_at(o)?, u32_at(o + 4)?, u32_at(o + 8)?, u32_at(o + 12)?, u32_at(o + 16)?, u32_at(o + 20)?])
    };
    let strtab = header(shstrndx).ok_or_else(|| err("no section name table"))?;
    let name_at = |off: u32| -> String {
        let start = strtab[4] as usize + off as usize;
        let rest = bytes.get(start..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    };
    let mut out = Vec::new();
    for i in 0..shnum {
        let [name, kind, flags, addr, _, size] = header(i).ok_or_else(|| err("truncated section headers"))?;
        if flags & SHF_ALLOC != 0 && size > 0 {
            out.push(Section { name: name_at(name), addr, size, has_data: kind != SHT_NOBITS });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_not_misread() {
        let p = Path::new("x.elf");
        assert!(sections(p, b"").is_err());
        assert!(sections(p, b"\x7fELF\x02\x01rest").is_err());
        let mut truncated = vec![0x7f, b'E', b'L', b'F', 1, 1];
        truncated.resize(0x34, 0);
        truncated[0x2e] = 40;
        truncated[0x30] = 3;
        assert!(sections(p, &truncated).is_err());
    }
}
