//! `scripts/bench`'s options that name another program: a wrong path is refused at
//! once, with a line that says which option and why, before anything is built or run.
//! (The measurements themselves take minutes; `scripts/bench --quick` runs them.)

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bench(args: &[&str]) -> (i32, String) {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench"))
        .args(args)
        .output()
        .expect("python3 runs scripts/bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn a_fluent_bit_that_is_not_there_or_not_executable_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("fluent-bit");
    let (code, text) = bench(&["--compare-fluent-bit", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        text.trim(),
        format!(
            "bench: --compare-fluent-bit {}: no such file",
            missing.display()
        )
    );

    std::fs::write(&missing, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = bench(&["--compare-fluent-bit", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        text.trim(),
        format!(
            "bench: --compare-fluent-bit {}: not an executable file",
            missing.display()
        )
    );

    let (code, text) = bench(&["--compare-fluent-bit", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not an executable file"), "{text}");

    let (code, text) = bench(&["--compare-fluent-bit"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("--compare-fluent-bit: expected one argument"),
        "{text}"
    );
}

#[test]
fn the_reference_binary_is_checked_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("qlship");
    let (code, text) = bench(&["--reference", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--reference") && text.contains("no such file"),
        "{text}"
    );
    let (code, text) = bench(&["--runs", "0"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--runs must be at least 1"), "{text}");
}
