//! The model, one way or the other: generated code (default) or the interpreter on the `.qfdm` file.
//! Both take the same input and call `on_layer(index, output)` after every layer, so the session does not
//! care which one runs.

use qfd_runtime::LayerOutput;

use crate::config::{INPUT_LEN, NUM_CLASSES};

pub use imp::{Model, ENGINE};

/// The same as [`ENGINE`], for logs.
pub const ENGINE_NAME: &str = if cfg!(feature = "interpreter") { "interpreter" } else { "generated" };

/// What an engine does.
pub trait Infer {
    /// Runs one inference and returns the class. The session has checked the input's length and codes.
    fn infer(
        &self,
        input: &[u8; INPUT_LEN],
        logits: &mut [i32; NUM_CLASSES],
        on_layer: impl FnMut(usize, LayerOutput<'_>),
    ) -> usize;
}

#[cfg(not(feature = "interpreter"))]
mod imp {
    use qfd_link::Engine;
    use qfd_runtime::LayerOutput;

    use super::Infer;
    use crate::config::{INPUT_LEN, NUM_CLASSES};

    mod generated {
        // The firmware reads only part of the module's constants.
        #![allow(dead_code)]
        include!(concat!(env!("OUT_DIR"), "/model.rs"));
    }

    /// Which engine this firmware runs, for the `Hello`.
    pub const ENGINE: Engine = Engine::Generated;

    /// The generated model: code and static data, nothing to load.
    pub struct Model;

    impl Model {
        /// The model.
        pub fn load() -> Self {
            Model
        }
    }

    impl Infer for Model {
        fn infer(
            &self,
            input: &[u8; INPUT_LEN],
            logits: &mut [i32; NUM_CLASSES],
            on_layer: impl FnMut(usize, LayerOutput<'_>),
        ) -> usize {
            generated::infer_traced(input, logits, on_layer)
        }
    }
}

#[cfg(feature = "interpreter")]
mod imp {
    use qfd_link::Engine;
    use qfd_runtime::{LayerOutput, StaticArena};

    use super::Infer;
    use crate::config::{ARENA_SIZE, INPUT_LEN, NUM_CLASSES};
    use crate::fault;

    /// Which engine this firmware runs, for the `Hello`.
    pub const ENGINE: Engine = Engine::Interpreter;

    /// Keeps the model file word-aligned in flash, whatever the linker does with a plain byte array.
    #[repr(C, align(4))]
    struct Aligned<T: ?Sized>(T);

    static FILE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.qfdm")));
    static ARENA: StaticArena<ARENA_SIZE> = StaticArena::new();

    /// The `.qfdm` file in flash, loaded (checked) once.
    pub struct Model(&'static qfd_runtime::Model<'static>);

    impl Model {
        /// Loads and checks the file; its op table (~8 KB) goes into a static, not onto the stack.
        pub fn load() -> Self {
            let model = qfd_runtime::Model::load(&FILE.0)
                .unwrap_or_else(|_| fault::halt("the model in flash is invalid"));
            let model = cortex_m::singleton!(: qfd_runtime::Model<'static> = model)
                .unwrap_or_else(|| fault::halt("the model was loaded twice"));
            Model(model)
        }
    }

    impl Infer for Model {
        fn infer(
            &self,
            input: &[u8; INPUT_LEN],
            logits: &mut [i32; NUM_CLASSES],
            mut on_layer: impl FnMut(usize, LayerOutput<'_>),
        ) -> usize {
            let run =
                ARENA.with(|arena| self.0.run_traced(input, arena, logits, |i, _, out| on_layer(i, out)));
            match run {
                Some(Ok(class)) => class,
                // The session checked the input and build.rs sized the arena: neither can fail.
                _ => fault::halt("the interpreter refused a checked input"),
            }
        }
    }
}
