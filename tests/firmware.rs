//! The firmware builds from `cross/` do the real job under QEMU user mode: HTTPS (ring's
//! assembly for that CPU) with a CA file, a catch-up, live rows, a rotation, a restart of
//! the journal and a clean SIGTERM, ending exact on the stand-in.
//!
//! Binaries are looked for at `target/<TRIPLE>/release/qlship` (what `cross/build`
//! prints). The tests are ignored unless asked for: scripts/test runs them when
//! `QLSHIP_FIRMWARE` is `all` or lists triples (CI builds every board and sets `all`);
//! a board that is run without its binary fails. Each test is named after its triple
//! (`-` and `.` as `_`), which is how scripts/test picks the listed ones.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::*;

/// The emulator command for a board (empty for the host's own architecture).
fn runs_under(triple: &str) -> &'static [&'static str] {
    match triple {
        "aarch64-unknown-linux-musl" => &["qemu-aarch64-static"],
        // Pi 2/3 in 32-bit mode
        "armv7-unknown-linux-musleabihf" => &["qemu-arm-static", "-cpu", "cortex-a7"],
        // Pi Zero / Pi 1: ARMv6 with VFP
        "arm-unknown-linux-musleabihf" => &["qemu-arm-static", "-cpu", "arm1176"],
        // OpenWrt's mipsel_24kc routers
        "mipsel-unknown-linux-musl" => &["qemu-mipsel-static", "-cpu", "24Kc"],
        "x86_64-unknown-linux-musl" => &[],
        other => panic!("no emulator known for {other}"),
    }
}

fn firmware(triple: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(triple)
        .join("release/qlship");
    assert!(
        bin.exists(),
        "{} is missing: run cross/build {triple}",
        bin.display()
    );
    bin
}

fn ships_a_queue_log_exactly(triple: &str) {
    let bin = firmware(triple);
    let mut program: Vec<&str> = runs_under(triple).to_vec();
    program.push(bin.to_str().unwrap());
    let (env, ca) = tls_env();
    let ca = ca.to_str().unwrap().to_string();
    let tls = ["--https", "--cacert", ca.as_str()];

    let (text, _) = rows(0..2500);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let (_, expected) = rows(0..2500);

    // Catch-up of a backlog, to the end of the file.
    env.append(&lines[..1500].concat());
    let status = env.drain_program(&program, &tls);
    assert!(status.success(), "{triple}: {status}\n{}", env.logs());
    env.assert_exact(&expected[..1500]);

    // Live: rows written while it runs, then a rotation by rename and a new file.
    let daemon = env.spawn_program(&program, &tls);
    env.append(&lines[1500..2000].concat());
    env.wait_for_rows(2000, Duration::from_secs(60));
    std::fs::rename(&env.ql, env.dir.path().join("queue_log.1")).unwrap();
    env.append(&lines[2000..].concat());
    env.wait_for_rows(2500, Duration::from_secs(60));
    stop_within(daemon, Duration::from_secs(15));
    env.assert_exact(&expected);
}

#[test]
#[ignore = "needs target/aarch64-unknown-linux-musl/release/qlship (cross/build) and QLSHIP_FIRMWARE"]
fn aarch64_unknown_linux_musl_ships_exactly() {
    ships_a_queue_log_exactly("aarch64-unknown-linux-musl");
}

#[test]
#[ignore = "needs target/armv7-unknown-linux-musleabihf/release/qlship (cross/build) and QLSHIP_FIRMWARE"]
fn armv7_unknown_linux_musleabihf_ships_exactly() {
    ships_a_queue_log_exactly("armv7-unknown-linux-musleabihf");
}

#[test]
#[ignore = "needs target/arm-unknown-linux-musleabihf/release/qlship (cross/build) and QLSHIP_FIRMWARE"]
fn arm_unknown_linux_musleabihf_ships_exactly() {
    ships_a_queue_log_exactly("arm-unknown-linux-musleabihf");
}

#[test]
#[ignore = "needs target/mipsel-unknown-linux-musl/release/qlship (cross/build) and QLSHIP_FIRMWARE"]
fn mipsel_unknown_linux_musl_ships_exactly() {
    ships_a_queue_log_exactly("mipsel-unknown-linux-musl");
}

#[test]
#[ignore = "needs target/x86_64-unknown-linux-musl/release/qlship (cross/build) and QLSHIP_FIRMWARE"]
fn x86_64_unknown_linux_musl_ships_exactly() {
    ships_a_queue_log_exactly("x86_64-unknown-linux-musl");
}
