//! Frames: `COBS(postcard(message) ++ crc32_le(postcard(message))) ++ [0]`.
//!
//! COBS removes every zero byte from the frame body, so a `0` always ends a frame and a reader that lost its
//! place (noise, a dropped byte, a frame that was too long) finds the next frame at the next `0`. The CRC
//! catches what COBS cannot: flipped bits that still decode.

use serde::{Deserialize, Serialize};

use crate::CRC;

/// Why a frame could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer cannot hold the encoded frame.
    BufferTooSmall,
    /// The frame is longer than the reader's buffer; it was skipped up to its terminator.
    TooLong,
    /// The bytes are not valid COBS.
    Cobs,
    /// The frame is shorter than its checksum.
    Short,
    /// The checksum does not match: the frame was corrupted on the way.
    Crc,
    /// The checksum matches but the message is not one this side knows (a protocol mismatch).
    Message,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::BufferTooSmall => "the frame does not fit the buffer",
            FrameError::TooLong => "the frame is longer than the receive buffer",
            FrameError::Cobs => "the frame is not valid COBS",
            FrameError::Short => "the frame is shorter than its checksum",
            FrameError::Crc => "the frame's checksum does not match (corrupted on the way)",
            FrameError::Message => "the frame holds no known message (protocol mismatch?)",
        })
    }
}

impl core::error::Error for FrameError {}

/// The longest COBS encoding of `len` bytes, terminator included.
pub const fn max_encoded_len(len: usize) -> usize {
    cobs::max_encoding_length(len) + 1
}

/// Encodes `message` as one frame into `buf`; returns the frame, terminator included.
///
/// The message is serialized into the back of `buf`, then COBS-encoded into its front: COBS writes at most
/// one byte more than it has read per 254, so a buffer of [`max_encoded_len`] of the message and checksum
/// never lets the writer overtake the reader.
pub fn encode<'b, T: Serialize>(message: &T, buf: &'b mut [u8]) -> Result<&'b [u8], FrameError> {
    let len = buf.len();
    // Leave room at the front for the COBS overhead and the terminator.
    let reserve = (len / 254 + 2).min(len);
    let body_len = {
        let body =
            postcard::to_slice(message, &mut buf[reserve..]).map_err(|_| FrameError::BufferTooSmall)?;
        body.len()
    };
    if reserve + body_len + 4 > len {
        return Err(FrameError::BufferTooSmall);
    }
    let crc = CRC.checksum(&buf[reserve..reserve + body_len]);
    buf[reserve + body_len..reserve + body_len + 4].copy_from_slice(&crc.to_le_bytes());
    let raw_len = body_len + 4;
    if cobs::max_encoding_length(raw_len) + 1 > len {
        return Err(FrameError::BufferTooSmall);
    }
    let encoded = cobs_encode_overlapping(buf, reserve, raw_len);
    buf[encoded] = 0;
    Ok(&buf[..encoded + 1])
}

/// COBS-encodes `buf[src..src + len]` into the front of `buf`. Encoding writes a block's code byte, then
/// its at most 254 data bytes, so the write position never passes the read position as long as the source
/// starts at least `len / 254 + 1` bytes in.
fn cobs_encode_overlapping(buf: &mut [u8], src: usize, len: usize) -> usize {
    let (mut read, end) = (src, src + len);
    let mut write = 0;
    loop {
        // One block: up to 254 non-zero bytes, then either a zero (consumed) or the end.
        let code_at = write;
        write += 1;
        let mut code = 1u8;
        while read < end && buf[read] != 0 && code < 0xFF {
            buf[write] = buf[read];
            write += 1;
            read += 1;
            code += 1;
        }
        buf[code_at] = code;
        if read == end {
            // A block that ended on a zero still needs its closing (empty) block; a full block does not.
            break;
        }
        if code < 0xFF {
            // Consumed a zero byte: it is implied by this block's code.
            read += 1;
            if read == end {
                buf[write] = 1;
                write += 1;
                break;
            }
        }
    }
    write
}

/// Decodes one frame in place; `frame` is the bytes before its terminating `0`. The message may borrow
/// from `frame` (an input, a board name).
pub fn decode<'b, T: Deserialize<'b>>(frame: &'b mut [u8]) -> Result<T, FrameError> {
    if frame.contains(&0) {
        return Err(FrameError::Cobs);
    }
    let len = cobs::decode_in_place(frame).map_err(|_| FrameError::Cobs)?;
    if len < 4 {
        return Err(FrameError::Short);
    }
    let (body, crc) = frame[..len].split_at(len - 4);
    if CRC.checksum(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(FrameError::Crc);
    }
    let (message, rest) = postcard::take_from_bytes(body).map_err(|_| FrameError::Message)?;
    if !rest.is_empty() {
        return Err(FrameError::Message);
    }
    Ok(message)
}

/// Collects bytes from a stream into frames, in a fixed buffer of `N` bytes.
#[derive(Debug)]
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Set while skipping the rest of a frame that did not fit.
    overflowed: bool,
}

/// What [`FrameReader::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<'r> {
    /// A frame is complete: its bytes, terminator excluded, ready for [`decode`].
    Frame(&'r mut [u8]),
    /// A frame longer than the buffer ended here; its bytes were dropped.
    TooLong,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        FrameReader { buf: [0; N], len: 0, overflowed: false }
    }

    /// Feeds bytes from `data` until a frame ends. Returns how many bytes were consumed and, if a frame
    /// ended, the frame (or [`Pushed::TooLong`]). Call again with the rest of `data`.
    pub fn push<'r>(&'r mut self, data: &[u8]) -> (usize, Option<Pushed<'r>>) {
        // A previous call returned a frame: start afresh.
        for (i, &byte) in data.iter().enumerate() {
            if byte == 0 {
                let (len, overflowed) = (self.len, self.overflowed);
                self.len = 0;
                self.overflowed = false;
                if overflowed {
                    return (i + 1, Some(Pushed::TooLong));
                }
                if len == 0 {
                    // An empty frame (a stray terminator) carries nothing: skip it.
                    continue;
                }
                return (i + 1, Some(Pushed::Frame(&mut self.buf[..len])));
            }
            if self.len == N {
                self.overflowed = true;
            } else if !self.overflowed {
                self.buf[self.len] = byte;
                self.len += 1;
            }
        }
        (data.len(), None)
    }
}
