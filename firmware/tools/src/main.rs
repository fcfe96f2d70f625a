//! `parity-case <arch> <H>x<W>x<C> <bits> <count> <out-dir>`: writes what a firmware parity run needs:
//!
//! - `model.qfdm`: a synthetic `<arch>` model, weights and activations of `<bits>` bits;
//! - `inputs.bin`: `<count>` inputs of `input_len` bytes, concatenated (for the firmware's `QFD_INPUTS`);
//! - `expected.txt`: the host runtime's `result <i> class=<c> logits=...` line for each input, the format the
//!   firmware prints (without its `instructions=` field).

use std::fmt::Write as _;
use std::{env, fs, path::PathBuf, process::ExitCode};

use qfd_codegen::synth::{synth, SynthConfig};
use qfd_runtime::format::ElemType;
use qfd_runtime::Model;

fn main() -> ExitCode {
    match run(env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parity-case: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let [arch, shape, bits, count, out] = &args[..] else {
        return Err("usage: parity-case <arch> <H>x<W>x<C> <bits> <count> <out-dir>".into());
    };
    let dims: Vec<usize> = shape
        .split('x')
        .map(|d| d.parse().map_err(|_| format!("bad shape {shape}")))
        .collect::<Result<_, _>>()?;
    let input: [usize; 3] = dims.try_into().map_err(|_| format!("shape {shape} is not HxWxC"))?;
    let bits: u8 = bits.parse().map_err(|_| format!("bad bits {bits}"))?;
    let count: u32 = count.parse().map_err(|_| format!("bad count {count}"))?;

    let mut config = SynthConfig::new(arch.parse()?, input);
    config.weight_bits = bits;
    config.act_bits = bits;
    let bytes =
        qfd_codegen::encode_model(&synth(&config).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let model = Model::load(&bytes).map_err(|e| e.to_string())?;
    let input_bits = match model.desc().values[0].elem {
        ElemType::Codes { bits } => bits,
        ElemType::I32 => return Err("model input is not activation codes".into()),
    };

    let (mut inputs, mut expected) = (Vec::new(), String::new());
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    for i in 0..count {
        let mut x = vec![0u8; model.input_len()];
        generate(i, input_bits, &mut x);
        let class = model.run(&x, &mut arena, &mut logits).map_err(|e| e.to_string())?;
        let joined: Vec<String> = logits.iter().map(i32::to_string).collect();
        writeln!(expected, "result {i} class={class} logits={}", joined.join(",")).unwrap();
        inputs.extend_from_slice(&x);
    }

    let out = PathBuf::from(out);
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, data) in
        [("model.qfdm", &bytes[..]), ("inputs.bin", &inputs[..]), ("expected.txt", expected.as_bytes())]
    {
        fs::write(out.join(name), data).map_err(|e| format!("{name}: {e}"))?;
    }
    eprintln!(
        "{arch} {shape} W{bits}A{bits}: {} bytes, arena {} B, {count} inputs -> {}",
        bytes.len(),
        model.arena_size(),
        out.display()
    );
    Ok(())
}

/// The firmware's input generator (`firmware/src/main.rs`); change both or neither.
fn generate(index: u32, bits: u8, out: &mut [u8]) {
    let mut state = index.wrapping_mul(0x9E37_79B9) ^ 0x5EED;
    for byte in out {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *byte = (state >> 24) as u8 >> (8 - bits);
    }
}
