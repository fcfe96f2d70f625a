//! A target without hardware or QEMU: `qfd-device`, the firmware's own protocol code, serves the requests
//! on the host with the interpreter, over an in-memory port. The session's logic is tested on it, including
//! the ways a device can fail.

use std::path::Path;
use std::time::Duration;

use qfd_device::host::{MemoryPort, StepClock};
use qfd_device::link::{self, Greeting, LinkBuffers};
use qfd_device::{Board, Interpreter, TimeUnit};
use qfd_link::frame;
use qfd_link::{PanicReport, Response};
use qfd_runtime::Model;

use super::target::{Finished, Progress, Target, TargetError};

/// How the fake device misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    /// It does not.
    #[default]
    None,
    /// It goes silent after this many answers.
    StallAfter(usize),
    /// It panics after this many answers.
    PanicAfter(usize),
    /// It claims to run the model with this payload CRC.
    ModelCrc(u32),
}

/// A device that is the host runtime running `model_bytes`.
pub struct FakeTarget {
    model_bytes: Vec<u8>,
    model_crc: u32,
    fault: Fault,
}

impl FakeTarget {
    /// A fake device running the model file `model_bytes` (which must be valid).
    pub fn new(model_bytes: Vec<u8>, fault: Fault) -> Self {
        let model_crc = qfd_codegen::emit::model_crc(&model_bytes).expect("the fake runs valid models");
        FakeTarget { model_bytes, model_crc, fault }
    }

    /// The device's bytes in answer to `requests`, and whether it ends cleanly.
    fn answers(&self, requests: &[u8]) -> (Vec<u8>, bool) {
        let model = Model::load(&self.model_bytes).expect("the fake runs valid models");
        let mut arena = vec![0u8; model.arena_size()];
        let crc = if let Fault::ModelCrc(c) = self.fault { c } else { self.model_crc };
        let mut device = Interpreter::new(&model, &mut arena, crc).expect("the arena is the model's size");
        let mut port = MemoryPort::new(requests, usize::MAX);
        let board = Board { name: "fake", clock_hz: 1_000_000, stack_usage: None };
        let mut buffers = Box::new(LinkBuffers::<65536>::new());
        let served = link::serve(
            &mut port,
            &mut device,
            &mut StepClock::new(TimeUnit::Instructions, 1_000_000_000, 1_000),
            &board,
            Greeting::Announce,
            &mut buffers,
        );
        // Hello, then one frame per answer.
        let frames: Vec<&[u8]> = port.output.split_inclusive(|&b| b == 0).collect();
        match self.fault {
            Fault::StallAfter(n) => (frames[..frames.len().min(1 + n)].concat(), false),
            Fault::PanicAfter(n) => {
                let mut out = frames[..frames.len().min(1 + n)].concat();
                let panic = Response::Panic(PanicReport { file: "src/fake.rs", line: 7, message: "boom" });
                let mut buf = vec![0u8; qfd_link::MAX_RESPONSE_FRAME];
                out.extend_from_slice(frame::encode(&panic, &mut buf).expect("a panic frame fits"));
                (out, false)
            }
            Fault::None | Fault::ModelCrc(_) => (port.output, served.is_ok()),
        }
    }
}

impl Target for FakeTarget {
    fn describe(&self) -> String {
        "fake device (qfd-device on the host)".into()
    }

    fn run(
        &mut self,
        _elf: &Path,
        requests: &[u8],
        timeout: Duration,
        on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
    ) -> Result<Finished, TargetError> {
        let (bytes, clean) = self.answers(requests);
        for frame in bytes.split_inclusive(|&b| b == 0) {
            if on_bytes(frame) == Progress::Done {
                break;
            }
        }
        if matches!(self.fault, Fault::StallAfter(_)) {
            return Err(TargetError::Silent { seconds: timeout.as_secs() });
        }
        Ok(Finished { exit: Some(clean), log: Vec::new() })
    }
}
