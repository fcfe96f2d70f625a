//! Byte arrays as Rust source.

use std::fmt::Write as _;

/// Bytes per source line of a byte-string literal.
const BYTES_PER_LINE: usize = 24;

/// Writes `static NAME: [u8; N] = *b"...";` with `data` as a byte-string literal, which rustc reads much
/// faster than a list of 80,000 integers. Lines are joined by `\` + newline, which the literal skips.
pub fn write_static(w: &mut String, doc: &str, name: &str, data: &[u8]) {
    let _ = writeln!(w, "/// {doc}");
    let _ = write!(w, "static {name}: [u8; {}] = *b\"", data.len());
    for (i, chunk) in data.chunks(BYTES_PER_LINE).enumerate() {
        if i > 0 {
            w.push_str("\\\n    ");
        }
        for &b in chunk {
            let _ = write!(w, "\\x{b:02x}");
        }
    }
    w.push_str("\";\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_arrays_are_split_into_lines_that_join_back() {
        let data: Vec<u8> = (0..=255).collect();
        let mut w = String::new();
        write_static(&mut w, "All bytes.", "ALL", &data);
        assert!(w.starts_with("/// All bytes.\nstatic ALL: [u8; 256] = *b\"\\x00\\x01"));
        assert!(w.ends_with("\\xff\";\n"));
        // Joining the continuation lines back gives one escape per byte, in order.
        let body = &w[w.find("*b\"").unwrap() + 3..w.rfind('"').unwrap()];
        let joined = body.replace("\\\n    ", "");
        let decoded: Vec<u8> =
            joined.split("\\x").skip(1).map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
        assert_eq!(decoded, data);
    }
}
