//! The model and the board's memory map, from `$QFD_MODEL` and `$QFD_BOARD` (`rp-pico`).
fn main() {
    qfd_codegen::build_script::run().unwrap_or_else(|e| panic!("{e}"));
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
