//! Running firmware in QEMU and reading its result lines.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use qfd_boards::{Board, Runner};

use super::DeviceError;

/// One inference as the firmware reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceResult {
    /// Predicted class.
    pub class: usize,
    /// Logits.
    pub logits: Vec<i32>,
    /// Guest instructions of the inference.
    pub instructions: u64,
}

/// Parses `result <i> class=<c> logits=<a>,<b>,... instructions=<n>`; `None` for any other line.
pub fn parse_result(line: &str) -> Option<(usize, DeviceResult)> {
    let mut fields = line.strip_prefix("result ")?.split(' ');
    let index = fields.next()?.parse().ok()?;
    let class = fields.next()?.strip_prefix("class=")?.parse().ok()?;
    let logits = fields.next()?.strip_prefix("logits=")?;
    let logits = logits.split(',').map(|l| l.parse().ok()).collect::<Option<Vec<i32>>>()?;
    let instructions = fields.next()?.strip_prefix("instructions=")?.parse().ok()?;
    fields.next().is_none().then_some((index, DeviceResult { class, logits, instructions }))
}

/// Runs `elf` on the board's QEMU machine (instruction counting on, semihosting for output) and collects
/// `count` results in order. Stops QEMU and fails after `timeout`.
pub fn run(
    board: &Board,
    elf: &Path,
    count: usize,
    timeout: Duration,
) -> Result<Vec<DeviceResult>, DeviceError> {
    let Runner::Qemu { machine, cpu } = &board.run else {
        unreachable!("only emulated boards reach QEMU");
    };
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", machine, "-cpu", cpu, "-nographic", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DeviceError::Spawn { program: "qemu-system-arm".into(), source })?;
    // Lines arrive on a channel so that the time limit holds even if the firmware goes silent.
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let device_error = |message: String| DeviceError::Device { board: board.name.clone(), message };
    let mut results = Vec::with_capacity(count);
    let mut last = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some((i, r)) = parse_result(&line) {
                    if i != results.len() {
                        let _ = child.kill();
                        return Err(device_error(format!(
                            "result {i} arrived when {} was expected",
                            results.len()
                        )));
                    }
                    results.push(r);
                } else if let Some(why) = line.strip_prefix("error: ") {
                    let _ = child.kill();
                    return Err(device_error(format!("the firmware stopped: {why}")));
                } else if line.starts_with("result") {
                    let _ = child.kill();
                    return Err(device_error(format!("unreadable result line: {line:?}")));
                }
                last = line;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DeviceError::Timeout {
                    board: board.name.clone(),
                    done: results.len(),
                    total: count,
                    seconds: timeout.as_secs(),
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status =
        child.wait().map_err(|source| DeviceError::Spawn { program: "qemu-system-arm".into(), source })?;
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        return Err(device_error(format!("QEMU exited with {status} after {last:?}; {}", stderr.trim())));
    }
    if results.len() != count || last != "done" {
        return Err(device_error(format!("{} of {count} results, then {last:?}", results.len())));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_and_anything_else_does_not() {
        let (i, r) = parse_result("result 3 class=7 logits=-5,0,12 instructions=1234").unwrap();
        assert_eq!((i, r.class, r.logits, r.instructions), (3, 7, vec![-5, 0, 12], 1234));
        for bad in [
            "result 3 class=7 logits=-5,x,12 instructions=1",
            "result 3 class=7 logits=1",
            "result 3 class=7 logits=1 instructions=2 extra",
            "model ok arena=3",
            "",
        ] {
            assert!(parse_result(bad).is_none(), "{bad:?}");
        }
    }
}
