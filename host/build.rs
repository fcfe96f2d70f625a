// Lets binaries linking libtorch find it at run time without `LD_LIBRARY_PATH` (also used by `tests/`).
use std::env;

pub fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    // torch-sys (links = "tch") reports the libtorch lib directory it linked against, to crates that depend
    // on it directly. It follows LIBTORCH (.cargo/config.toml), LIBTORCH_LIB and LIBTORCH_USE_PYTORCH=1.
    if let Some(lib) = env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
    // Keep libtorch.so although no symbol of it is used: in a CUDA libtorch it is what loads
    // libtorch_cuda.so, without which tch::Cuda::is_available() is always false.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
