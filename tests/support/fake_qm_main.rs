//! `cargo run --example fake-qm -- [--port 8080] [--user U] [--pass P] [--context C]
//!  [--quiet] [--count-only] [--record FILE]`
//! A local QueueMetrics stand-in that prints one line per command it receives.
//! `--count-only` and `--record` are for scripts/bench (see fake_qm.rs).

#[path = "fake_qm.rs"]
mod fake_qm;

fn main() {
    let mut cfg = fake_qm::FakeConfig {
        port: 8080,
        verbose: true,
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--port" => cfg.port = value().parse().expect("--port takes a number"),
            "--user" => cfg.user = value(),
            "--pass" => cfg.pass = value(),
            "--context" => cfg.context = value(),
            "--quiet" => cfg.verbose = false,
            "--count-only" => cfg.count_only = true,
            "--record" => cfg.record = Some(value().into()),
            other => {
                eprintln!("fake-qm: unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    let qm = fake_qm::FakeQm::start(cfg.clone());
    println!(
        "fake QueueMetrics listening on http://127.0.0.1:{}/{}/jsonQLoaderApi.do (user {})",
        qm.port(),
        cfg.context,
        cfg.user
    );
    loop {
        std::thread::park();
    }
}
