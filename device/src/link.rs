//! The device side of the SDK's link (`qfd-link`): one answer per request until `Finish`.
//!
//! ```text
//! host -> device   Hello                     device -> host   Hello { board, engine, model CRC, ... }
//! host -> device   Infer { id, input }       device -> host   Result { id, logits, time, ... }
//! host -> device   Finish                    device -> host   Done { inferences, stack }
//! ```
//! Over a link the host starts (files under QEMU, RTT) the device may also say `Hello` unasked, first
//! ([`Greeting::Announce`]); over a serial port the board may have booted long before the host opened it,
//! so it waits to be asked ([`Greeting::OnRequest`]).

use embedded_io::{Read, Write};
use qfd_link::frame::{self, Pushed};
use qfd_link::{
    Detail, Done, ErrorKind, FrameError, FrameReader, Hello, InferResult, Request, Response, StackUse,
    MAX_CLASSES, MAX_LAYERS, MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

use crate::{Board, Clock, Model, ServeError};

/// The link's buffers: a receive buffer for the largest request of the model's input, and a send
/// buffer for the largest response. `REQUEST_FRAME` is `qfd_link::max_request_frame(input_len)`.
pub struct LinkBuffers<const REQUEST_FRAME: usize> {
    reader: FrameReader<REQUEST_FRAME>,
    out: [u8; MAX_RESPONSE_FRAME],
}

impl<const REQUEST_FRAME: usize> LinkBuffers<REQUEST_FRAME> {
    /// Empty buffers (const, so they can be a static).
    pub const fn new() -> Self {
        LinkBuffers { reader: FrameReader::new(), out: [0; MAX_RESPONSE_FRAME] }
    }
}

impl<const REQUEST_FRAME: usize> Default for LinkBuffers<REQUEST_FRAME> {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the device says `Hello` before it is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// First thing, unasked (the host started the device and is listening).
    Announce,
    /// Only in answer to a `Hello` request.
    OnRequest,
}

/// Serves requests from `port` until `Finish`; returns the number of inferences.
pub fn serve<P, M, C, const REQUEST_FRAME: usize>(
    port: &mut P,
    model: &mut M,
    clock: &mut C,
    board: &Board,
    greeting: Greeting,
    buffers: &mut LinkBuffers<REQUEST_FRAME>,
) -> Result<u32, ServeError>
where
    P: Read + Write,
    M: Model,
    C: Clock,
{
    let info = model.info();
    if qfd_link::max_request_frame(info.input_len) > REQUEST_FRAME || info.num_classes > MAX_CLASSES {
        return Err(ServeError::BufferTooSmall);
    }
    let LinkBuffers { reader, out } = buffers;
    if greeting == Greeting::Announce {
        send(port, out, &Response::Hello(hello(board, &info, clock)))?;
    }
    let mut chunk = [0u8; 256];
    let mut inferences = 0u32;
    loop {
        let n = port.read(&mut chunk).map_err(|_| ServeError::Read)?;
        if n == 0 {
            return Err(ServeError::Ended);
        }
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let (used, pushed) = reader.push(rest);
            rest = &rest[used..];
            let answer = match pushed {
                None => continue,
                Some(Pushed::TooLong) => bad_frame(FrameError::TooLong),
                Some(Pushed::Frame(bytes)) => match frame::decode::<Request>(bytes) {
                    Err(e) => bad_frame(e),
                    Ok(Request::Hello) => Response::Hello(hello(board, &info, clock)),
                    Ok(Request::Finish) => {
                        let stack =
                            board.stack_usage.map_or(StackUse { peak_bytes: 0, size_bytes: 0 }, |f| f());
                        send(port, out, &Response::Done(Done { inferences, stack }))?;
                        return Ok(inferences);
                    }
                    Ok(Request::Infer { id, detail, input }) => {
                        inferences += 1;
                        infer(model, &info, clock, id, detail, input)
                    }
                },
            };
            send(port, out, &answer)?;
        }
    }
}

fn hello<'b>(board: &'b Board, info: &crate::ModelInfo, clock: &impl Clock) -> Hello<'b> {
    Hello {
        protocol: PROTOCOL_VERSION,
        board: board.name,
        engine: info.engine,
        model_crc: info.model_crc,
        time_unit: clock.unit(),
        clock_hz: board.clock_hz,
        input_len: info.input_len as u32,
        num_classes: info.num_classes as u16,
        num_layers: info.num_layers as u16,
        arena_bytes: info.arena_bytes as u32,
    }
}

fn bad_frame(e: FrameError) -> Response<'static> {
    #[cfg(feature = "defmt")]
    defmt::warn!("bad frame: {}", e);
    Response::Error { id: None, kind: ErrorKind::BadFrame(e) }
}

/// Checks the input's length and codes; the first problem found.
pub(crate) fn check_input(info: &crate::ModelInfo, input: &[u8]) -> Result<(), ErrorKind> {
    if input.len() != info.input_len {
        return Err(ErrorKind::InputLength { expected: info.input_len as u32, found: input.len() as u32 });
    }
    match input.iter().position(|&c| info.input_bits < 8 && u32::from(c) >> info.input_bits != 0) {
        Some(index) => Err(ErrorKind::InputCodeOutOfRange { index: index as u32 }),
        None => Ok(()),
    }
}

/// Checks the input, runs the model and measures what `detail` asks.
fn infer(
    model: &mut impl Model,
    info: &crate::ModelInfo,
    clock: &mut impl Clock,
    id: u32,
    detail: Detail,
    input: &[u8],
) -> Response<'static> {
    if let Err(kind) = check_input(info, input) {
        return Response::Error { id: Some(id), kind };
    }
    let mut logits = [0i32; MAX_CLASSES];
    let logits = &mut logits[..info.num_classes];
    let mut layer_time = heapless::Vec::<u64, MAX_LAYERS>::new();
    let mut layer_crc = heapless::Vec::<u32, MAX_LAYERS>::new();
    let start = clock.now();
    let mut last = start;
    let class = model.infer(input, logits, &mut |_, output| {
        if detail.layer_time {
            let now = clock.now();
            // At most MAX_LAYERS layers (the runtime's op limit): the push cannot fail.
            let _ = layer_time.push(now - last);
            last = now;
        }
        if detail.layer_crc {
            let _ = layer_crc.push(qfd_link::layer_crc(output.bytes()));
            // The checksum's own time is not the layer's.
            last = clock.now();
        }
    });
    let time = clock.now() - start;
    let Some(class) = class else {
        return Response::Error { id: Some(id), kind: ErrorKind::Refused };
    };
    Response::Result(InferResult {
        id,
        class: class as u16,
        logits: logits.iter().copied().collect(),
        time,
        layer_time,
        layer_crc,
    })
}

fn send(port: &mut impl Write, buf: &mut [u8], response: &Response<'_>) -> Result<(), ServeError> {
    let bytes = frame::encode(response, buf).map_err(|_| ServeError::BufferTooSmall)?;
    port.write_all(bytes).map_err(|_| ServeError::Write)?;
    port.flush().map_err(|_| ServeError::Write)
}
