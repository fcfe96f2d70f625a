//! The link over an emulated board's UART: the CMSDK APB UART of Arm's MPS2/MPS3 images, whose
//! character device QEMU's `-serial` connects to the host (a socket, when `qfd-host` runs it).
//!
//! Polled, one byte at a time: the UART holds one received byte, and QEMU stops feeding it until that
//! byte is read, so nothing is lost while the model runs.

use core::ptr::{read_volatile, write_volatile};

use crate::config::UART_BASE;

/// The host opens the link after the board starts: the device waits to be asked for `Hello`.
#[allow(dead_code)] // the MLPerf protocol has no greeting
pub const GREETING: qfd_device::link::Greeting = qfd_device::link::Greeting::OnRequest;

const DATA: usize = 0x0;
const STATE: usize = 0x4;
const CTRL: usize = 0x8;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// The board's first UART.
pub struct Uart(());

fn read_reg(offset: usize) -> u32 {
    // SAFETY: UART_BASE is the board file's address of the machine's CMSDK UART, whose registers are
    // 32-bit MMIO words at these offsets; reading them has no effect beyond the UART's own state.
    #[allow(unsafe_code)]
    unsafe {
        read_volatile((UART_BASE + offset) as *const u32)
    }
}

fn write_reg(offset: usize, value: u32) {
    // SAFETY: as in `read_reg`; only this module touches the UART.
    #[allow(unsafe_code)]
    unsafe {
        write_volatile((UART_BASE + offset) as *mut u32, value)
    }
}

/// Turns the UART on (a valid baud divisor, then transmit and receive).
pub fn open() -> Uart {
    const _: () =
        assert!(UART_BASE != 0, "the board file names no UART (run = {{ qemu = {{ uart = ... }} }})");
    write_reg(BAUDDIV, 16);
    write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
    Uart(())
}

fn write_byte(byte: u8) {
    while read_reg(STATE) & STATE_TX_FULL != 0 {}
    write_reg(DATA, u32::from(byte));
}

/// Writes `bytes` from a panic or fault handler.
pub fn emergency_write(bytes: &[u8]) {
    bytes.iter().copied().for_each(write_byte);
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Uart {
    /// Blocks for the first byte, then takes what has already arrived.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        while n < buf.len() {
            let ready = read_reg(STATE) & STATE_RX_FULL != 0;
            if ready {
                buf[n] = read_reg(DATA) as u8;
                n += 1;
            } else if n > 0 {
                break;
            }
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        buf.iter().copied().for_each(write_byte);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        while read_reg(STATE) & STATE_TX_FULL != 0 {}
        Ok(())
    }
}
