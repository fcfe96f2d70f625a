//! NumPy `.npy` files of `uint8` and `int32` arrays: what `qfd-host trace` writes and reads, so that its
//! tensors open with `numpy.load`.
//!
//! A file is the magic `\x93NUMPY`, a version (`1 0` here: numpy writes 2.0 or 3.0 only for headers longer
//! than 65,535 bytes, and this reader accepts those too), the header length (little-endian `u16`, `u32` from
//! version 2.0), then the header: the text of a Python dict such as
//! `{'descr': '|u1', 'fortran_order': False, 'shape': (28, 28, 16), }`, padded with spaces and ending in `\n`
//! so that the data starts at a multiple of 64 bytes. The data follows in C order (last axis fastest).
//!
//! ```
//! use qfd_host::npy::{Array, Elements};
//!
//! let array = Array::new(vec![2, 3], Elements::U8(vec![1, 2, 3, 4, 5, 6]))?;
//! let bytes = array.to_bytes();
//! assert_eq!(bytes.len() % 64, 6); // a 64-byte header, then 6 bytes of data
//! assert_eq!(Array::from_bytes(&bytes)?, array);
//! # Ok::<(), qfd_host::npy::NpyError>(())
//! ```

use std::path::{Path, PathBuf};

use crate::fsutil::{self, FsError};

/// The first six bytes of every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The data start is aligned to this many bytes, as numpy does.
const ALIGN: usize = 64;

/// Why bytes are not a `.npy` array this module can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The bytes do not start with `\x93NUMPY`.
    #[error("not a .npy file (missing the \\x93NUMPY magic)")]
    BadMagic,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {major}.{minor} (reads 1.0, 2.0 and 3.0)")]
    UnsupportedVersion {
        /// Major version in the file.
        major: u8,
        /// Minor version in the file.
        minor: u8,
    },
    /// The file ends inside its preamble or header.
    #[error("truncated: the header needs {needed} bytes, the file has {found}")]
    Truncated {
        /// Bytes up to the end of the header.
        needed: usize,
        /// Bytes in the file.
        found: usize,
    },
    /// The header is not a dict of `descr`, `fortran_order` and `shape` as numpy writes it.
    #[error("bad header: {0}")]
    BadHeader(String),
    /// An element type other than `uint8` and little-endian `int32`.
    #[error("unsupported dtype '{0}': only '|u1' (uint8) and '<i4' (little-endian int32) are read")]
    UnsupportedDtype(String),
    /// The array is stored in Fortran (column-major) order.
    #[error("fortran_order arrays are not supported: save a C-ordered array (numpy.ascontiguousarray)")]
    FortranOrder,
    /// The number of elements overflows when multiplying out the shape.
    #[error("shape {0:?} has too many elements")]
    ShapeOverflow(Vec<usize>),
    /// The data is not exactly as long as the shape and dtype say.
    #[error("the data has {found} bytes, shape {shape:?} of {dtype} needs {expected}")]
    DataLength {
        /// The shape from the header.
        shape: Vec<usize>,
        /// The dtype from the header.
        dtype: &'static str,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes after the header.
        found: usize,
    },
    /// [`Array::new`] was given a shape that does not hold the number of elements given.
    #[error("shape {shape:?} holds {expected} elements, {found} given")]
    ShapeMismatch {
        /// The shape given.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        found: usize,
    },
}

/// Why a `.npy` file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NpyFileError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] FsError),
    /// The file is not a `.npy` array this module reads.
    #[error("{}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: NpyError,
    },
}

/// The elements of an array, in C order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elements {
    /// `uint8`, dtype `|u1`.
    U8(Vec<u8>),
    /// `int32`, dtype `<i4` (little-endian in the file).
    I32(Vec<i32>),
}

impl Elements {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::U8(v) => v.len(),
            Elements::I32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy dtype descriptor: `|u1` or `<i4`.
    pub fn descr(&self) -> &'static str {
        match self {
            Elements::U8(_) => "|u1",
            Elements::I32(_) => "<i4",
        }
    }

    /// The numpy dtype name: `uint8` or `int32`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Elements::U8(_) => "uint8",
            Elements::I32(_) => "int32",
        }
    }

    /// Bytes of one element in the file.
    pub fn item_size(&self) -> usize {
        match self {
            Elements::U8(_) => 1,
            Elements::I32(_) => 4,
        }
    }

    /// The smallest and largest element, `None` when there are none.
    pub fn min_max(&self) -> Option<(i64, i64)> {
        match self {
            Elements::U8(v) => Some((i64::from(*v.iter().min()?), i64::from(*v.iter().max()?))),
            Elements::I32(v) => Some((i64::from(*v.iter().min()?), i64::from(*v.iter().max()?))),
        }
    }
}

/// An n-dimensional C-ordered array of `uint8` or `int32`: its shape always holds exactly its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    shape: Vec<usize>,
    data: Elements,
}

impl Array {
    /// An array of `shape` (an empty shape is a scalar, holding one element) over `data`.
    pub fn new(shape: Vec<usize>, data: Elements) -> Result<Self, NpyError> {
        let expected = elements_of(&shape)?;
        if expected != data.len() {
            return Err(NpyError::ShapeMismatch { shape, expected, found: data.len() });
        }
        Ok(Array { shape, data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, in C order.
    pub fn data(&self) -> &Elements {
        &self.data
    }

    /// The array as the bytes of a version 1.0 `.npy` file (2.0 if the header would not fit 1.0, which takes
    /// thousands of dimensions).
    pub fn to_bytes(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        // Python's repr of a tuple: `()`, `(5,)`, `(2, 3)`.
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let dict =
            format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", self.data.descr());
        // The header is the dict, spaces and '\n', so that the preamble and header end on a multiple of ALIGN.
        let header_len = |preamble: usize| (preamble + dict.len() + 1).next_multiple_of(ALIGN) - preamble;
        // Version 1.0 stores the header length in a u16, 2.0 in a u32 (needed only for thousands of axes).
        let (version, len_field) =
            if header_len(MAGIC.len() + 4) <= usize::from(u16::MAX) { ([1, 0], 2) } else { ([2, 0], 4) };
        let preamble = MAGIC.len() + 2 + len_field;
        let len = header_len(preamble);
        let len_le = u32::try_from(len).expect("a header of a Vec's axes fits u32").to_le_bytes();

        let mut out = Vec::with_capacity(preamble + len + self.data.len() * self.data.item_size());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version);
        out.extend_from_slice(&len_le[..len_field]);
        out.extend_from_slice(dict.as_bytes());
        out.resize(preamble + len - 1, b' ');
        out.push(b'\n');
        match &self.data {
            Elements::U8(v) => out.extend_from_slice(v),
            Elements::I32(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        }
        out
    }

    /// Parses the bytes of a `.npy` file of `uint8` or little-endian `int32` in C order, checking that the
    /// data is exactly as long as the header says.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NpyError> {
        let truncated = |needed: usize| NpyError::Truncated { needed, found: bytes.len() };
        // A file cut inside the magic is truncated; one with other bytes there is not a .npy file.
        let known = bytes.len().min(MAGIC.len());
        if bytes[..known] != MAGIC[..known] {
            return Err(NpyError::BadMagic);
        }
        if bytes.len() < MAGIC.len() + 2 {
            return Err(truncated(MAGIC.len() + 4));
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let len_bytes = match (major, minor) {
            (1, 0) => 2,
            (2, 0) | (3, 0) => 4,
            _ => return Err(NpyError::UnsupportedVersion { major, minor }),
        };
        let preamble = MAGIC.len() + 2 + len_bytes;
        let len_field = bytes.get(8..preamble).ok_or_else(|| truncated(preamble))?;
        let header_len = len_field.iter().rev().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let data_start = preamble + header_len;
        let header = bytes.get(preamble..data_start).ok_or_else(|| truncated(data_start))?;
        let header = std::str::from_utf8(header)
            .map_err(|_| NpyError::BadHeader("the header is not UTF-8 text".into()))?;
        let (descr, fortran_order, shape) = parse_header(header)?;
        if fortran_order {
            return Err(NpyError::FortranOrder);
        }
        let (dtype, size) = match descr.as_str() {
            // One byte has no byte order: numpy writes '|', other writers '<' or '>'.
            "|u1" | "<u1" | ">u1" | "u1" => ("uint8", 1),
            "<i4" => ("int32", 4),
            _ => return Err(NpyError::UnsupportedDtype(descr)),
        };
        let count = elements_of(&shape)?;
        let data = &bytes[data_start..];
        let expected = count.checked_mul(size).ok_or_else(|| NpyError::ShapeOverflow(shape.clone()))?;
        if data.len() != expected {
            return Err(NpyError::DataLength { shape, dtype, expected, found: data.len() });
        }
        let data = match size {
            1 => Elements::U8(data.to_vec()),
            _ => Elements::I32(
                data.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            ),
        };
        Ok(Array { shape, data })
    }
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Array, NpyFileError> {
    let bytes = fsutil::read(path)?;
    Array::from_bytes(&bytes).map_err(|source| NpyFileError::Invalid { path: path.to_path_buf(), source })
}

/// Writes `array` to `path` as a `.npy` file, atomically ([`fsutil::write_atomic`]).
pub fn write(path: &Path, array: &Array) -> Result<(), FsError> {
    fsutil::write_atomic(path, &array.to_bytes())
}

fn elements_of(shape: &[usize]) -> Result<usize, NpyError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| NpyError::ShapeOverflow(shape.to_vec()))
}

/// A value of the header dict.
#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header dict: exactly the keys `descr` (a string), `fortran_order` (a bool) and `shape` (a tuple
/// of non-negative integers), in any order, as Python literals.
fn parse_header(text: &str) -> Result<(String, bool, Vec<usize>), NpyError> {
    let mut p = Parser { text, pos: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect('{')?;
    loop {
        if p.eat('}') {
            break;
        }
        let key = p.string()?;
        let expected = match key.as_str() {
            "descr" => "a string",
            "fortran_order" => "True or False",
            "shape" => "a tuple of dimensions",
            _ => return Err(bad(format!("unexpected key '{key}'"))),
        };
        p.expect(':')?;
        let slot_taken = match (key.as_str(), p.literal()?) {
            ("descr", Literal::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Literal::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Literal::Tuple(t)) => shape.replace(t).is_some(),
            _ => return Err(bad(format!("'{key}' must be {expected}"))),
        };
        if slot_taken {
            return Err(bad(format!("key '{key}' appears twice")));
        }
        if !p.eat(',') {
            p.expect('}')?;
            break;
        }
    }
    if !p.rest().trim().is_empty() {
        return Err(bad(format!("unexpected text after the dict: {:?}", p.rest().trim())));
    }
    let missing = |key: &str| bad(format!("missing key '{key}'"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;
    Ok((descr, fortran, shape))
}

fn bad(message: String) -> NpyError {
    NpyError::BadHeader(message)
}

/// A cursor over the header text; every method skips leading whitespace.
struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        let found = self.rest().starts_with(c);
        if found {
            self.pos += c.len_utf8();
        }
        found
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(bad(format!("expected '{c}' at byte {}", self.pos)))
        }
    }

    /// A string in single or double quotes, without escapes (numpy's keys and dtype strings have none).
    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_space();
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(bad(format!("expected a quoted string at byte {}", self.pos))),
        };
        let body = &self.rest()[1..];
        let end = body.find(quote).ok_or_else(|| bad("unterminated string".into()))?;
        let s = body[..end].to_string();
        self.pos += 2 + end;
        Ok(s)
    }

    fn literal(&mut self) -> Result<Literal, NpyError> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if self.rest().starts_with(word) {
                self.pos += word.len();
                return Ok(Literal::Bool(value));
            }
        }
        if self.eat('(') {
            return self.tuple_rest().map(Literal::Tuple);
        }
        if self.rest().starts_with(['\'', '"']) {
            return self.string().map(Literal::Str);
        }
        Err(bad(format!("expected a string, True, False or a tuple at byte {}", self.pos)))
    }

    /// The rest of a tuple of integers after its `(`: `)`, `5,)`, `2, 3)`, `2, 3,)` (and `5)`, which numpy
    /// never writes but which can only mean one thing).
    fn tuple_rest(&mut self) -> Result<Vec<usize>, NpyError> {
        let mut items = Vec::new();
        loop {
            if self.eat(')') {
                break;
            }
            items.push(self.integer()?);
            if !self.eat(',') {
                self.expect(')')?;
                break;
            }
        }
        Ok(items)
    }

    fn integer(&mut self) -> Result<usize, NpyError> {
        self.skip_space();
        let digits = self.rest().len() - self.rest().trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad(format!("expected a dimension at byte {}", self.pos)));
        }
        let text = &self.rest()[..digits];
        let value = text.parse().map_err(|_| bad(format!("dimension {text} is too large")))?;
        self.pos += digits;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u8_array(shape: &[usize]) -> Array {
        let n = shape.iter().product::<usize>();
        Array::new(shape.to_vec(), Elements::U8((0..n).map(|i| (i * 7) as u8).collect())).unwrap()
    }

    /// The bytes of a version 1.0 file with this header text (padded as numpy pads it) and data.
    fn file_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn writes_the_header_numpy_writes() {
        let bytes = u8_array(&[28, 28, 16]).to_bytes();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (28, 28, 16), }"));
        assert!(header.ends_with(" \n"), "{header:?}");
        assert_eq!(bytes.len(), 10 + header_len + 28 * 28 * 16);

        let logits = Array::new(vec![1, 1, 3], Elements::I32(vec![-1, 2, i32::MIN])).unwrap();
        let bytes = logits.to_bytes();
        let header = String::from_utf8_lossy(&bytes[10..bytes.len() - 12]).into_owned();
        assert!(header.starts_with("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 3), }"));
        assert_eq!(&bytes[bytes.len() - 12..], [0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0x80]);
    }

    #[test]
    fn round_trips_every_rank_and_both_dtypes() {
        for shape in [vec![], vec![5], vec![2, 3], vec![28, 28, 1], vec![0, 4], vec![1, 2, 3, 4]] {
            let a = u8_array(&shape);
            assert_eq!(Array::from_bytes(&a.to_bytes()).unwrap(), a, "{shape:?}");
            let n = shape.iter().product::<usize>();
            let values = (0..n).map(|i| (i as i32 - 3) * 1_000_003).collect();
            let b = Array::new(shape.clone(), Elements::I32(values)).unwrap();
            assert_eq!(Array::from_bytes(&b.to_bytes()).unwrap(), b, "{shape:?}");
        }
        assert!(u8_array(&[5]).to_bytes()[10..74]
            .starts_with(b"{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }"));
        assert!(u8_array(&[]).to_bytes()[10..74]
            .starts_with(b"{'descr': '|u1', 'fortran_order': False, 'shape': (), }"));
    }

    #[test]
    fn a_header_too_long_for_version_1_is_written_as_version_2() {
        let a = Array::new(vec![1; 30_000], Elements::U8(vec![7])).unwrap();
        let bytes = a.to_bytes();
        assert_eq!(&bytes[6..8], [2, 0]);
        let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!((12 + header_len) % 64, 0);
        assert_eq!(Array::from_bytes(&bytes).unwrap(), a);
    }

    #[test]
    fn reads_headers_other_writers_produce() {
        // Double quotes, other key order, no trailing comma, extra spaces, version 2.0, '<u1'.
        let dict = r#"{"shape": ( 2 , 2 ), "fortran_order": False, "descr": "<u1"}"#;
        let a = Array::from_bytes(&file_with_header(dict, &[1, 2, 3, 4])).unwrap();
        assert_eq!(a.shape(), [2, 2]);
        assert_eq!(a.data(), &Elements::U8(vec![1, 2, 3, 4]));

        let mut v2 = file_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }", &[9]);
        let header_len = u16::from_le_bytes([v2[8], v2[9]]);
        v2.splice(6..10, [2, 0].into_iter().chain(u32::from(header_len).to_le_bytes()));
        assert_eq!(Array::from_bytes(&v2).unwrap().data(), &Elements::U8(vec![9]));
    }

    #[test]
    fn refuses_malformed_files_saying_what_is_wrong() {
        let good = u8_array(&[2, 3]).to_bytes();
        let header = |dict: &str| Array::from_bytes(&file_with_header(dict, &[0; 6])).unwrap_err();
        let cases: Vec<(NpyError, &str)> = vec![
            (Array::from_bytes(b"").unwrap_err(), "truncated"),
            (Array::from_bytes(b"\x93NUM").unwrap_err(), "truncated"),
            (Array::from_bytes(b"PK\x03\x04 a zip file").unwrap_err(), "not a .npy file"),
            (Array::from_bytes(&good[..9]).unwrap_err(), "truncated"),
            (Array::from_bytes(&good[..40]).unwrap_err(), "truncated: the header needs 128 bytes"),
            (Array::from_bytes(&good[..good.len() - 1]).unwrap_err(), "the data has 5 bytes"),
            (Array::from_bytes(&[good.as_slice(), &[0]].concat()).unwrap_err(), "the data has 7 bytes"),
            (Array::from_bytes(&[&good[..6], &[4, 0], &good[8..]].concat()).unwrap_err(), "version 4.0"),
            (
                header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
                "unsupported dtype '<f4'",
            ),
            (
                header("{'descr': '>i4', 'fortran_order': False, 'shape': (2, 3), }"),
                "unsupported dtype '>i4'",
            ),
            (header("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }"), "fortran_order"),
            (header("{'descr': '|u1', 'shape': (2, 3), }"), "missing key 'fortran_order'"),
            (
                header("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), 'x': 1}"),
                "unexpected key 'x'",
            ),
            (header("{'descr': '|u1', 'fortran_order': False, 'shape': (2, -3), }"), "expected a dimension"),
            (
                header("{'descr': '|u1', 'fortran_order': 0, 'shape': (2, 3), }"),
                "expected a string, True, False",
            ),
            (header("{'descr': '|u1', 'fortran_order': False, 'shape': '2,3', }"), "'shape' must be a tuple"),
            (header("{'descr': '|u1', 'descr': '|u1', 'shape': (2, 3), }"), "appears twice"),
            (header("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3)"), "expected '}'"),
            (header("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3)} x"), "after the dict"),
            (
                header("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,)}"),
                "too large",
            ),
            (
                header("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296)}"),
                "too many",
            ),
        ];
        for (err, needle) in cases {
            assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
        }
    }

    #[test]
    fn new_refuses_a_shape_that_does_not_hold_the_data() {
        let err = Array::new(vec![2, 2], Elements::U8(vec![0; 3])).unwrap_err();
        assert_eq!(err.to_string(), "shape [2, 2] holds 4 elements, 3 given");
    }

    #[test]
    fn reads_and_writes_files_naming_the_path_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let a = u8_array(&[3, 2]);
        write(&path, &a).unwrap();
        assert_eq!(read(&path).unwrap(), a);
        std::fs::write(&path, b"garbage").unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, NpyFileError::Invalid { source: NpyError::BadMagic, .. }));
        assert!(err.to_string().contains("a.npy"), "{err}");
        assert!(matches!(read(&dir.path().join("missing.npy")), Err(NpyFileError::Read(_))));
    }

    #[test]
    fn min_max_covers_both_dtypes() {
        assert_eq!(Elements::U8(vec![3, 1, 9]).min_max(), Some((1, 9)));
        assert_eq!(Elements::I32(vec![-5, 7]).min_max(), Some((-5, 7)));
        assert_eq!(Elements::U8(vec![]).min_max(), None);
    }
}
