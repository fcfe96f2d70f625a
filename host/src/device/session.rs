//! The host side of the `qfd-link` protocol, written once for every target: the request stream, and the
//! reading of the device's answers into an [`Outcome`].

use std::time::Duration;

use qfd_link::frame::{self, Pushed};
use qfd_link::{
    Detail, Done, ErrorKind, FrameReader, InferResult, Request, Response, TimeUnit, PROTOCOL_VERSION,
};

use super::target::{Progress, Target, TargetError};
use super::DeviceError;

/// One encoded request frame, terminator included.
pub fn request_frame(request: &Request<'_>) -> Vec<u8> {
    let len = match request {
        Request::Infer { input, .. } => qfd_link::max_request_frame(input.len()),
        Request::Finish | Request::Hello => 16,
    };
    let mut buf = vec![0u8; len];
    let n = frame::encode(request, &mut buf).expect("max_request_frame bounds every request").len();
    buf.truncate(n);
    buf
}

/// The request stream of a run: one `Infer` per input (`detail(i)` says what to measure for input `i`),
/// then `Finish`.
pub fn request_stream(inputs: &[&[u8]], detail: impl Fn(usize) -> Detail) -> Vec<u8> {
    let mut stream = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        stream.extend(request_frame(&Request::Infer { id: i as u32, detail: detail(i), input }));
    }
    stream.extend(request_frame(&Request::Finish));
    stream
}

/// What the device said to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHello {
    /// Board name.
    pub board: String,
    /// How it runs the model.
    pub engine: qfd_link::Engine,
    /// What its times count.
    pub time_unit: TimeUnit,
    /// Core clock.
    pub clock_hz: u32,
    /// Layers of its model.
    pub num_layers: usize,
}

/// Everything a successful session returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The device's `Hello`.
    pub hello: DeviceHello,
    /// Results, in the order they came (`id` says which input).
    pub results: Vec<InferResult>,
    /// Requests the device could not serve.
    pub errors: Vec<(Option<u32>, ErrorKind)>,
    /// The device's closing report.
    pub done: Done,
    /// The device's log (defmt frames as it sent them; see [`super::logs`]).
    pub log: Vec<u8>,
}

/// What the host knows about the firmware it built, to check the device's `Hello` against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The board.
    pub board: &'a str,
    /// The payload CRC of the model the firmware was built from.
    pub model_crc: u32,
    /// Requests in the stream (the answers to expect).
    pub requests: usize,
}

/// Runs `elf` on `target` with the request stream `requests` and reads every answer. Fails if the device
/// goes silent for `timeout`, panics, exits with failure, runs another model, or says something the
/// protocol does not allow. `on_answer(answers_so_far)` is called after each answer (for a progress bar).
pub fn execute(
    target: &mut dyn Target,
    elf: &std::path::Path,
    requests: &[u8],
    expect: Expect<'_>,
    timeout: Duration,
    mut on_answer: impl FnMut(usize),
) -> Result<Outcome, DeviceError> {
    let mut reader = ResponseReader::new(expect);
    let run = target.run(elf, requests, timeout, &mut |bytes| {
        reader.push(bytes);
        on_answer(reader.state.answers);
        if reader.state.finished() {
            Progress::Done
        } else {
            Progress::More
        }
    });
    let device = |message: String| DeviceError::Device { board: expect.board.into(), message };
    let finished = match run {
        Ok(f) => f,
        Err(TargetError::Silent { seconds }) => {
            return Err(reader.state.failure().unwrap_or(DeviceError::Timeout {
                board: expect.board.into(),
                done: reader.state.answers,
                total: expect.requests,
                seconds,
            }))
        }
        Err(TargetError::Other(e)) => return Err(e),
    };
    let state = reader.state;
    if let Some(e) = state.failure() {
        return Err(e);
    }
    if finished.exit == Some(false) {
        return Err(device(format!(
            "the firmware exited with failure after {} of {} answers{}",
            state.answers,
            expect.requests,
            super::logs::tail_hint(elf, &finished.log)
        )));
    }
    let (Some(hello), Some(done)) = (state.hello, state.done) else {
        return Err(device(format!(
            "the run ended after {} of {} answers without the closing Done frame{}",
            state.answers,
            expect.requests,
            super::logs::tail_hint(elf, &finished.log)
        )));
    };
    Ok(Outcome { hello, results: state.results, errors: state.errors, done, log: finished.log })
}

/// Decodes the device's byte stream as it arrives.
struct ResponseReader<'a> {
    frames: Box<FrameReader<{ qfd_link::MAX_RESPONSE_FRAME }>>,
    state: State<'a>,
}

/// What the device has said so far.
struct State<'a> {
    expect: Expect<'a>,
    hello: Option<DeviceHello>,
    results: Vec<InferResult>,
    errors: Vec<(Option<u32>, ErrorKind)>,
    done: Option<Done>,
    /// Answers to requests (results and errors) so far.
    answers: usize,
    /// The first thing that makes the run a failure.
    problem: Option<String>,
}

impl<'a> ResponseReader<'a> {
    fn new(expect: Expect<'a>) -> Self {
        let state = State {
            expect,
            hello: None,
            results: Vec::new(),
            errors: Vec::new(),
            done: None,
            answers: 0,
            problem: None,
        };
        ResponseReader { frames: Box::new(FrameReader::new()), state }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.state.problem.is_none() {
            let (used, pushed) = self.frames.push(bytes);
            bytes = &bytes[used..];
            let problem = match pushed {
                None => None,
                Some(Pushed::TooLong) => Some("the device sent a frame longer than any response".to_string()),
                Some(Pushed::Frame(f)) => match frame::decode::<Response>(f) {
                    Err(e) => Some(format!("the device sent a bad frame: {e}")),
                    Ok(response) => self.state.accept(response).err(),
                },
            };
            if problem.is_some() {
                self.state.problem = problem;
            }
        }
    }
}

impl State<'_> {
    fn finished(&self) -> bool {
        self.done.is_some() || self.problem.is_some()
    }

    fn failure(&self) -> Option<DeviceError> {
        self.problem.clone().map(|message| DeviceError::Device { board: self.expect.board.into(), message })
    }

    fn accept(&mut self, response: Response<'_>) -> Result<(), String> {
        match response {
            Response::Hello(h) => {
                if self.hello.is_some() {
                    return Err("the device said Hello twice (did it restart?)".into());
                }
                if h.protocol != PROTOCOL_VERSION {
                    return Err(format!(
                        "the firmware speaks link protocol {}, this qfd-host {PROTOCOL_VERSION}: rebuild one of them",
                        h.protocol
                    ));
                }
                if h.model_crc != self.expect.model_crc {
                    return Err(format!(
                        "the firmware runs another model (CRC {:#010x}, expected {:#010x}): it is stale, rebuild it",
                        h.model_crc, self.expect.model_crc
                    ));
                }
                self.hello = Some(DeviceHello {
                    board: h.board.into(),
                    engine: h.engine,
                    time_unit: h.time_unit,
                    clock_hz: h.clock_hz,
                    num_layers: h.num_layers.into(),
                });
            }
            _ if self.hello.is_none() => return Err("the device answered before saying Hello".into()),
            Response::Result(r) => {
                self.answers += 1;
                self.results.push(r);
            }
            Response::Error { id, kind } => {
                self.answers += 1;
                self.errors.push((id, kind));
            }
            Response::Done(d) => self.done = Some(d),
            Response::Panic(p) => {
                return Err(format!("the firmware panicked at {}:{}: {}", p.file, p.line, p.message));
            }
        }
        if self.answers > self.expect.requests {
            return Err(format!("the device sent more answers than the {} requests", self.expect.requests));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use qfd_codegen::encode_model;
    use qfd_codegen::synth::{synth, Arch, SynthConfig};

    use super::*;
    use crate::device::fake::{FakeTarget, Fault};

    fn model() -> Vec<u8> {
        let mut config = SynthConfig::new(Arch::ResNet8, [8, 8, 1]);
        (config.weight_bits, config.act_bits) = (4, 4);
        encode_model(&synth(&config).unwrap()).unwrap()
    }

    fn inputs(n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| (0..len).map(|j| (i * 31 + j * 7) as u8).collect()).collect()
    }

    fn session(fault: Fault, stream: impl Fn(&[&[u8]]) -> Vec<u8>, n: usize) -> Result<Outcome, DeviceError> {
        let bytes = model();
        let crc = qfd_codegen::emit::model_crc(&bytes).unwrap();
        let inputs = inputs(n, 64);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let requests = stream(&refs);
        let mut target = FakeTarget::new(bytes, fault);
        let expect = Expect { board: "fake", model_crc: crc, requests: n };
        execute(&mut target, Path::new("none.elf"), &requests, expect, Duration::from_secs(1), |_| {})
    }

    fn plain(inputs: &[&[u8]]) -> Vec<u8> {
        request_stream(inputs, |i| Detail { layer_time: i == 0, layer_crc: true })
    }

    #[test]
    fn every_request_gets_its_answer_then_done() {
        let outcome = session(Fault::None, plain, 5).unwrap();
        assert_eq!(outcome.results.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert!(outcome.errors.is_empty());
        assert_eq!(outcome.done.inferences, 5);
        assert_eq!(outcome.results[0].layer_time.len(), outcome.hello.num_layers);
        assert!(outcome.results[1].layer_time.is_empty(), "only the first input times its layers");
    }

    #[test]
    fn a_corrupted_request_is_refused_and_the_rest_served() {
        let corrupt = |inputs: &[&[u8]]| {
            let mut stream = Vec::new();
            for (i, input) in inputs.iter().enumerate() {
                let mut f = request_frame(&Request::Infer { id: i as u32, detail: Detail::default(), input });
                if i == 2 {
                    // Flip a bit in the middle of the frame (not into a zero, which would split it).
                    let mid = f.len() / 2;
                    f[mid] ^= if f[mid] == 1 { 2 } else { 1 };
                }
                stream.extend(f);
            }
            stream.extend(request_frame(&Request::Finish));
            stream
        };
        let outcome = session(Fault::None, corrupt, 4).unwrap();
        assert_eq!(outcome.results.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(outcome.errors.len(), 1);
        assert!(matches!(outcome.errors[0], (None, ErrorKind::BadFrame(_))), "{:?}", outcome.errors);
    }

    #[test]
    fn a_silent_device_is_a_timeout_naming_how_far_it_got() {
        let err = session(Fault::StallAfter(3), plain, 6).unwrap_err();
        assert!(matches!(err, DeviceError::Timeout { done: 3, total: 6, .. }), "{err}");
    }

    #[test]
    fn a_panic_is_reported_with_its_location() {
        let err = session(Fault::PanicAfter(1), plain, 3).unwrap_err().to_string();
        assert!(err.contains("panicked at src/fake.rs:7: boom"), "{err}");
    }

    #[test]
    fn firmware_built_from_another_model_is_refused() {
        let err = session(Fault::ModelCrc(0x1234_5678), plain, 2).unwrap_err().to_string();
        assert!(err.contains("runs another model (CRC 0x12345678"), "{err}");
    }
}
