//! Writes a qfd-link request file of N pseudo-random inputs for a model (for running firmware by hand,
//! e.g. under `qemu -d exec` to profile it): `cargo run --example link_requests -- m.qfdm N out.bin`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("model");
    let model = qfd_runtime::Model::load(&bytes).expect("valid model");
    let n: usize = args[2].parse().expect("count");
    let inputs: Vec<Vec<u8>> =
        (0..n).map(|i| (0..model.input_len()).map(|j| ((j * 31 + i * 7) % 251) as u8).collect()).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let stream =
        qfd_host::device::request_stream(&refs, |_| qfd_link::Detail { layer_time: false, layer_crc: false });
    std::fs::write(&args[3], stream).expect("write");
}
