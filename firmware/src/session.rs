//! The device side of the `qfd-link` protocol: `Hello`, then one answer per request until `Finish`.

use embedded_io::{Read, Write};
use qfd_link::frame::{self, Pushed};
use qfd_link::{
    Detail, Done, ErrorKind, FrameError, FrameReader, Hello, InferResult, Request, Response, MAX_LAYERS,
    MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

use crate::config::{
    ARENA_SIZE, BOARD, CLOCK_HZ, INPUT_BITS, INPUT_LEN, MODEL_CRC, NUM_CLASSES, NUM_LAYERS, REQUEST_FRAME,
};
use crate::engine::{Infer, Model, ENGINE};
use crate::{stack, timer};

/// Serves requests until `Finish`; returns the number of inferences, or why the link failed.
pub fn serve<L: Read + Write>(link: &mut L) -> Result<u32, &'static str> {
    // Statics, not stack: the linker then says when the buffers do not fit the board.
    let reader = cortex_m::singleton!(: FrameReader<REQUEST_FRAME> = FrameReader::new())
        .ok_or("the session was started twice")?;
    let out = cortex_m::singleton!(: [u8; MAX_RESPONSE_FRAME] = [0; MAX_RESPONSE_FRAME])
        .ok_or("the session was started twice")?;
    let model = Model::load();

    send(link, out, &Response::Hello(hello()))?;
    let mut chunk = [0u8; 256];
    let mut inferences = 0u32;
    loop {
        let n = link.read(&mut chunk).map_err(|_| "cannot read the link")?;
        if n == 0 {
            return Err("the link ended before Finish");
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
                    Ok(Request::Finish) => {
                        let done = Done { inferences, stack: stack::usage() };
                        send(link, out, &Response::Done(done))?;
                        return Ok(inferences);
                    }
                    Ok(Request::Infer { id, detail, input }) => {
                        inferences += 1;
                        infer(&model, id, detail, input)
                    }
                },
            };
            send(link, out, &answer)?;
        }
    }
}

fn hello() -> Hello<'static> {
    Hello {
        protocol: PROTOCOL_VERSION,
        board: BOARD,
        engine: ENGINE,
        model_crc: MODEL_CRC,
        time_unit: timer::UNIT,
        clock_hz: CLOCK_HZ,
        input_len: INPUT_LEN as u32,
        num_classes: NUM_CLASSES as u16,
        num_layers: NUM_LAYERS as u16,
        arena_bytes: ARENA_SIZE as u32,
    }
}

fn bad_frame(e: FrameError) -> Response<'static> {
    defmt::warn!("bad frame: {}", e);
    Response::Error { id: None, kind: ErrorKind::BadFrame(e) }
}

/// Checks the input, runs the model and measures what `detail` asks.
fn infer(model: &Model, id: u32, detail: Detail, input: &[u8]) -> Response<'static> {
    let refuse = |kind| Response::Error { id: Some(id), kind };
    let Ok(input) = <&[u8; INPUT_LEN]>::try_from(input) else {
        return refuse(ErrorKind::InputLength { expected: INPUT_LEN as u32, found: input.len() as u32 });
    };
    if let Some(index) = input.iter().position(|&c| u32::from(c) >> INPUT_BITS != 0) {
        return refuse(ErrorKind::InputCodeOutOfRange { index: index as u32 });
    }
    let mut logits = [0i32; NUM_CLASSES];
    let mut layer_time = heapless::Vec::<u64, MAX_LAYERS>::new();
    let mut layer_crc = heapless::Vec::<u32, MAX_LAYERS>::new();
    let start = timer::now();
    let mut last = start;
    let class = model.infer(input, &mut logits, |_, output| {
        if detail.layer_time {
            let now = timer::now();
            // At most MAX_LAYERS layers (the runtime's op limit): the push cannot fail.
            let _ = layer_time.push(now - last);
            last = now;
        }
        if detail.layer_crc {
            let _ = layer_crc.push(qfd_link::layer_crc(output.bytes()));
            // The checksum's own time is not the layer's.
            last = timer::now();
        }
    });
    let time = timer::now() - start;
    Response::Result(InferResult {
        id,
        class: class as u16,
        logits: logits.iter().copied().collect(),
        time,
        layer_time,
        layer_crc,
    })
}

fn send<L: Write>(link: &mut L, buf: &mut [u8], response: &Response<'_>) -> Result<(), &'static str> {
    let bytes = frame::encode(response, buf).map_err(|_| "a response does not fit its buffer")?;
    link.write_all(bytes).map_err(|_| "cannot write the link")?;
    link.flush().map_err(|_| "cannot flush the link")
}
