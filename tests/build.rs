// The same libtorch rpath as the host: these test binaries link libtorch through `qfd-host`.
include!("../host/build.rs");
