//! [`crate::kernels::add_table`] on Helium: sixteen bytes of each input a pass, each field of codes
//! turned into table indices with shifts and masks, sixteen lookups a gather load (`VLDRB.U8` at per-lane
//! byte offsets, which must differ from the destination register), the looked-up codes shifted back into
//! place.
#![allow(unsafe_code)]

/// Looks up the codes of `a.len()` whole bytes of `a` and `b` (`sb` = 4 or 2 bits a code; the same
/// length as `out`) in `table` (indexed by `x | y << sb`) into `out`; returns the bytes done (0 for other
/// widths).
pub fn bytes(a: &[u8], b: &[u8], table: &[u8; 256], sb: u32, out: &mut [u8]) -> usize {
    let n = out.len();
    assert!(a.len() == n && b.len() == n);
    if n == 0 || !(sb == 4 || sb == 2) {
        return 0;
    }
    // SAFETY: the tail-predicated loop reads `n` bytes of each of `a` and `b` (`VLDRB`) and writes `n` to
    // `out` (`VSTRB`); every gather offset is a byte (below 256, inside `table`). It also writes the
    // pointers it advances (copies), `lr` and `q0`-`q7`, all declared.
    unsafe {
        if sb == 4 {
            asm_all_q!({
                "vmov.i8 q7, #0x0f",
                "vmov.i8 q6, #0xf0",
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{a}], #16",
                "vldrb.u8 q1, [{b}], #16",
                // Low codes: `x | y << 4`; high codes: `x >> 4 | (y & 0xf0)`.
                "vand q2, q0, q7",
                "vshl.i8 q3, q1, #4",
                "vorr q2, q2, q3",
                "vshr.u8 q0, q0, #4",
                "vand q1, q1, q6",
                "vorr q0, q0, q1",
                "vldrb.u8 q4, [{t}, q2]",
                "vldrb.u8 q5, [{t}, q0]",
                "vshl.i8 q5, q5, #4",
                "vorr q4, q4, q5",
                "vstrb.8 q4, [{o}], #16",
                "letp lr, 2b",
                n = in(reg) n,
                a = inout(reg) a.as_ptr() => _,
                b = inout(reg) b.as_ptr() => _,
                o = inout(reg) out.as_mut_ptr() => _,
                t = in(reg) table.as_ptr(),
                out("lr") _,
            } options(nostack));
        } else {
            // Field `f` (bits `2f`, `2f + 1`): `(x >> 2f) & 3 | ((y >> 2f) & 3) << 2`, its code shifted
            // back by `2f` and added to `q2`.
            macro_rules! field {
                ($down:literal, $y:literal, $back:literal) => {
                    concat!(
                        "vshr.u8 q3, q0, #",
                        $down,
                        "\n",
                        "vand q3, q3, q7\n",
                        $y,
                        "vand q4, q4, q6\n",
                        "vorr q3, q3, q4\n",
                        "vldrb.u8 q5, [{t}, q3]\n",
                        "vshl.i8 q5, q5, #",
                        $back,
                        "\n",
                        "vorr q2, q2, q5\n",
                    )
                };
            }
            asm_all_q!({
                "vmov.i8 q7, #0x03",
                "vmov.i8 q6, #0x0c",
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{a}], #16",
                "vldrb.u8 q1, [{b}], #16",
                "vand q3, q0, q7",
                "vshl.i8 q4, q1, #2",
                "vand q4, q4, q6",
                "vorr q3, q3, q4",
                "vldrb.u8 q2, [{t}, q3]",
                field!("2", "vmov q4, q1\n", "2"),
                field!("4", "vshr.u8 q4, q1, #2\n", "4"),
                field!("6", "vshr.u8 q4, q1, #4\n", "6"),
                "vstrb.8 q2, [{o}], #16",
                "letp lr, 2b",
                n = in(reg) n,
                a = inout(reg) a.as_ptr() => _,
                b = inout(reg) b.as_ptr() => _,
                o = inout(reg) out.as_mut_ptr() => _,
                t = in(reg) table.as_ptr(),
                out("lr") _,
            } options(nostack));
        }
    }
    n
}
