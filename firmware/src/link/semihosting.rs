//! QEMU's semihosting: defmt logs on stdout, the exit status, and (`qfd_link = "semihosting"`) the link
//! through two host files.

// The defmt global logger: frames go to the host's stdout.
use defmt_semihosting as _;

#[cfg(qfd_link = "semihosting")]
pub use files::{emergency_write, open, GREETING};

/// Ends the run; QEMU exits with status 0 on success, 1 otherwise.
pub fn exit(success: bool) -> ! {
    semihosting::process::exit(if success { 0 } else { 1 })
}

#[cfg(qfd_link = "semihosting")]
mod files {
    use semihosting::c;
    use semihosting::fs::{File, OpenOptions};
    use semihosting::io::{Read as _, Write as _};

    use crate::fault;

    /// The host starts QEMU and then reads the response file: the device greets first.
    #[allow(dead_code)] // the MLPerf protocol has no greeting
    pub const GREETING: qfd_device::link::Greeting = qfd_device::link::Greeting::Announce;

    const REQUESTS: &core::ffi::CStr = c!("qfd-link.in");
    const RESPONSES: &core::ffi::CStr = c!("qfd-link.out");

    /// Both files, opened.
    pub struct Link {
        requests: File,
        responses: File,
    }

    /// Opens the request file and creates the response file; a missing request file ends the run.
    pub fn open() -> Link {
        let requests = File::open(REQUESTS).unwrap_or_else(|_| fault::halt("cannot open qfd-link.in"));
        let responses = File::create(RESPONSES).unwrap_or_else(|_| fault::halt("cannot create qfd-link.out"));
        Link { requests, responses }
    }

    /// Appends `bytes` to the response file from a panic or fault handler, without the session's handle.
    pub fn emergency_write(bytes: &[u8]) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(RESPONSES) {
            let _ = f.write_all(bytes);
        }
    }

    /// A semihosting call that fails; the session only needs to know that it did.
    #[derive(Debug)]
    pub struct LinkError;

    impl embedded_io::Error for LinkError {
        fn kind(&self) -> embedded_io::ErrorKind {
            embedded_io::ErrorKind::Other
        }
    }

    impl embedded_io::ErrorType for Link {
        type Error = LinkError;
    }

    impl embedded_io::Read for Link {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
            self.requests.read(buf).map_err(|_| LinkError)
        }
    }

    impl embedded_io::Write for Link {
        fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
            self.responses.write(buf).map_err(|_| LinkError)
        }

        fn flush(&mut self) -> Result<(), LinkError> {
            Ok(())
        }
    }
}
