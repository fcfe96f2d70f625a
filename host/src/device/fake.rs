//! A target without hardware or QEMU: the host runtime answers the requests as the firmware would. The
//! session's logic is tested on it, including the ways a device can fail.

use std::path::Path;
use std::time::Duration;

use qfd_link::frame::{self, Pushed};
use qfd_link::{
    Done, Engine, ErrorKind, FrameReader, Hello, InferResult, PanicReport, Request, Response, StackUse,
    TimeUnit, PROTOCOL_VERSION,
};
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

    /// The device's answers to `requests`, and whether it ends cleanly.
    fn answers(&self, requests: &[u8]) -> (Vec<Response<'static>>, bool) {
        let model = Model::load(&self.model_bytes).expect("the fake runs valid models");
        let model_crc = if let Fault::ModelCrc(c) = self.fault { c } else { self.model_crc };
        let mut out = vec![Response::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            board: "fake",
            engine: Engine::Interpreter,
            model_crc,
            time_unit: TimeUnit::Instructions,
            clock_hz: 1_000_000,
            input_len: model.input_len() as u32,
            num_classes: model.num_classes() as u16,
            num_layers: model.desc().ops.len() as u16,
            arena_bytes: model.arena_size() as u32,
        })];
        let mut reader = Box::new(FrameReader::<65536>::new());
        let (mut rest, mut answers, mut inferences) = (requests, 0usize, 0u32);
        while !rest.is_empty() {
            let (used, pushed) = reader.push(rest);
            rest = &rest[used..];
            let answer = match pushed {
                None => continue,
                Some(Pushed::TooLong) => {
                    Response::Error { id: None, kind: ErrorKind::BadFrame(qfd_link::FrameError::TooLong) }
                }
                Some(Pushed::Frame(f)) => match frame::decode::<Request>(f) {
                    Err(e) => Response::Error { id: None, kind: ErrorKind::BadFrame(e) },
                    Ok(Request::Hello) => out[0].clone(),
                    Ok(Request::Finish) => {
                        let stack = StackUse { peak_bytes: 1000, size_bytes: 4000 };
                        out.push(Response::Done(Done { inferences, stack }));
                        return (out, true);
                    }
                    Ok(Request::Infer { id, detail, input }) => {
                        inferences += 1;
                        let mut arena = vec![0u8; model.arena_size()];
                        let mut logits = vec![0i32; model.num_classes()];
                        let mut layer_crc = heapless::Vec::new();
                        let mut layer_time = heapless::Vec::new();
                        let run = model.run_traced(input, &mut arena, &mut logits, |i, _, o| {
                            if detail.layer_crc {
                                let _ = layer_crc.push(qfd_link::layer_crc(o.bytes()));
                            }
                            if detail.layer_time {
                                let _ = layer_time.push(1000 + i as u64);
                            }
                        });
                        match run {
                            Err(_) => Response::Error {
                                id: Some(id),
                                kind: ErrorKind::InputLength {
                                    expected: model.input_len() as u32,
                                    found: input.len() as u32,
                                },
                            },
                            Ok(class) => Response::Result(InferResult {
                                id,
                                class: class as u16,
                                logits: logits.iter().copied().collect(),
                                time: 12_345,
                                layer_time,
                                layer_crc,
                            }),
                        }
                    }
                },
            };
            match self.fault {
                Fault::StallAfter(n) if answers == n => return (out, false),
                Fault::PanicAfter(n) if answers == n => {
                    out.push(Response::Panic(PanicReport { file: "src/fake.rs", line: 7, message: "boom" }));
                    return (out, false);
                }
                _ => {}
            }
            out.push(answer);
            answers += 1;
        }
        (out, false)
    }
}

impl Target for FakeTarget {
    fn describe(&self) -> String {
        "fake device (host runtime)".into()
    }

    fn run(
        &mut self,
        _elf: &Path,
        requests: &[u8],
        timeout: Duration,
        on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
    ) -> Result<Finished, TargetError> {
        let (answers, clean) = self.answers(requests);
        let mut buf = vec![0u8; qfd_link::MAX_RESPONSE_FRAME];
        for answer in &answers {
            let bytes = frame::encode(answer, &mut buf).expect("answers fit a response frame");
            if on_bytes(bytes) == Progress::Done {
                break;
            }
        }
        if matches!(self.fault, Fault::StallAfter(_)) {
            return Err(TargetError::Silent { seconds: timeout.as_secs() });
        }
        Ok(Finished { exit: Some(clean), log: Vec::new() })
    }
}
