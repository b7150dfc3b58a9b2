//! Runs the simulator binary as CI does: it must exit 0, process every sample, and report
//! zero allocations after start-up (its allocator aborts the process otherwise).

use std::process::Command;

#[test]
fn firmware_sim_runs_without_allocating() {
    let out = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .args(["--seconds", "5"])
        .output()
        .expect("run firmware-sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains(", 0 after"), "{stdout}");
    // 5 s x 256 Hz x 8 channels (f32 model) and 5 s x the int8 model's rate x 8 channels.
    assert!(stdout.contains("samples processed: 10240 "), "{stdout}");
    assert!(
        stdout.contains("faults repaired: 0 input samples, 0 windows"),
        "{stdout}"
    );
    // Both models keep up on the cost-model clock: no block dropped by the interrupt queue.
    assert_eq!(stdout.matches(", 0 overruns").count(), 2, "{stdout}");
}
