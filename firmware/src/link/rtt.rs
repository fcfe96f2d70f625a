//! The link on real boards: RTT channels that probe-rs reads and writes while the core runs.

use rtt_target::{rtt_init, ChannelMode, DownChannel, UpChannel};

/// probe-rs resets the core and attaches before it reads: the device greets first.
#[allow(dead_code)] // the MLPerf protocol has no greeting
pub const GREETING: qfd_device::link::Greeting = qfd_device::link::Greeting::Announce;

/// Up channel 1 (responses) and down channel 0 (requests).
pub struct Link {
    up: UpChannel,
    down: DownChannel,
}

/// The RTT up channel that carries response frames.
const LINK_UP: usize = 1;

/// Sets up the RTT control block: defmt on up channel 0, the link on up channel 1 and down channel 0.
pub fn open() -> Link {
    let channels = rtt_init! {
        up: {
            0: { size: 1024, mode: ChannelMode::NoBlockSkip, name: "defmt" }
            1: { size: 4096, mode: ChannelMode::BlockIfFull, name: "qfd-link" }
        }
        down: {
            0: { size: 4096, name: "qfd-link" }
        }
    };
    rtt_target::set_defmt_channel(channels.up.0);
    Link { up: channels.up.1, down: channels.down.0 }
}

/// Writes `bytes` to the link's up channel from a panic or fault handler.
pub fn emergency_write(bytes: &[u8]) {
    // SAFETY: only called from the panic and fault handlers, which run with interrupts disabled and never
    // return to the session, so the session's handle of this channel is never used again.
    #[allow(unsafe_code)]
    if let Some(mut up) = unsafe { UpChannel::conjure(LINK_UP) } {
        up.set_mode(ChannelMode::BlockIfFull);
        up.write(bytes);
    }
}

/// Ends the run: the host has read everything it needs, so the core sleeps.
pub fn exit(_success: bool) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

impl embedded_io::ErrorType for Link {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        // embedded-io's read blocks until at least one byte arrives.
        loop {
            let n = self.down.read(buf);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
        }
    }
}

impl embedded_io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // The channel blocks while full (the host drains it), so everything is written.
        Ok(self.up.write(buf))
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.up.flush();
        Ok(())
    }
}
