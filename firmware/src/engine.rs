//! The model, one way or the other: generated code (default) or the interpreter on the `.qfdm` file,
//! both as a `qfd_device::Model`.

/// Which engine runs, for logs.
pub const ENGINE_NAME: &str = if cfg!(feature = "interpreter") { "interpreter" } else { "generated" };

/// The generated model: code and static data, nothing to load.
#[cfg(not(feature = "interpreter"))]
pub fn load() -> impl qfd_device::Model {
    use crate::model;
    qfd_device::generated_model!(model)
}

/// The `.qfdm` file in flash, loaded (checked) once, with its arena.
#[cfg(feature = "interpreter")]
pub fn load() -> impl qfd_device::Model {
    use crate::fault;
    use crate::model::{ARENA_SIZE, MODEL_CRC};

    /// Keeps the model file word-aligned in flash, whatever the linker does with a plain byte array.
    #[repr(C, align(4))]
    struct Aligned<T: ?Sized>(T);
    static FILE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.qfdm")));

    let model =
        qfd_runtime::Model::load(&FILE.0).unwrap_or_else(|_| fault::halt("the model in flash is invalid"));
    // Statics, not stack: the op table is ~8 KB and the linker checks that the arena fits.
    let model = cortex_m::singleton!(: qfd_runtime::Model<'static> = model)
        .unwrap_or_else(|| fault::halt("the model was loaded twice"));
    let arena = cortex_m::singleton!(: [u8; ARENA_SIZE] = [0; ARENA_SIZE])
        .unwrap_or_else(|| fault::halt("the arena was taken twice"));
    qfd_device::Interpreter::new(model, arena, MODEL_CRC)
        .unwrap_or_else(|| fault::halt("the arena is smaller than the model needs"))
}
