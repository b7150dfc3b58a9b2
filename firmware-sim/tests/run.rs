//! Runs the simulator binary as CI does: it must exit 0, process every sample, and report
//! zero allocations after start-up (its allocator aborts the process otherwise), with the eye
//! stage (the default) and without it (`--no-eye`).

use std::process::Command;

/// Runs the binary with `args`; returns its stdout after checking it succeeded without
/// allocating after start-up.
fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .args(args)
        .output()
        .expect("run firmware-sim");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains(", 0 after"), "{stdout}");
    stdout
}

#[test]
fn firmware_sim_runs_without_allocating() {
    let stdout = run(&["--seconds", "5"]);
    // 5 s x 256 Hz x 8 channels (f32 model) and 5 s x the int8 model's rate x 8 channels.
    assert!(stdout.contains("samples processed: 10240 "), "{stdout}");
    assert!(
        stdout.contains("faults repaired: 0 input samples, 0 windows"),
        "{stdout}"
    );
    // Both models keep up on the cost-model clock: no block dropped by the interrupt queue.
    assert_eq!(stdout.matches(", 0 overruns").count(), 2, "{stdout}");
    // The eye stage ran in front of both (every frame in and out) and is reported.
    assert_eq!(stdout.matches("eye stage static memory: ").count(), 2);
    assert!(
        stdout.contains("eye stage frames: 1280 in, 1280 out"),
        "{stdout}"
    );
    assert!(stdout.contains("eye stage latency: 128 frames = 0.500 s"));
    // Behind it the denoisers run `denoise`'s after-eye gate: the int8 model's own ramp for
    // the fast part, the slow part (rate / 16 samples each side) from 0.6 to 0.8.
    assert!(
        stdout.contains(
            "correction gate: 0.275..0.625 on the fast part, 0.6..0.8 on the slow part \
             (17-sample mean"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("correction gate: none on the fast part, 0.6..0.8 on the slow part (33"),
        "{stdout}"
    );
}

#[test]
fn the_eye_stage_finds_the_blinks_without_allocating() {
    // 20 s holds four blinks: the filter is active by the end for both rates.
    let stdout = run(&["--seconds", "20"]);
    assert_eq!(stdout.matches("filter active yes").count(), 2, "{stdout}");
    assert_eq!(stdout.matches(", 0 overruns").count(), 2, "{stdout}");
}

#[test]
fn firmware_sim_runs_without_the_eye_stage() {
    let stdout = run(&["--seconds", "5", "--no-eye"]);
    assert!(stdout.contains("eye stage: off"), "{stdout}");
    assert!(!stdout.contains("eye stage static memory"), "{stdout}");
    assert!(stdout.contains("samples processed: 10240 "), "{stdout}");
    assert_eq!(stdout.matches(", 0 overruns").count(), 2, "{stdout}");
    // The denoisers with the models' own gates (the f32 model has none).
    assert!(
        stdout.contains("correction gate: 0.275..0.625\n"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("correction gate").count(), 1, "{stdout}");
}
