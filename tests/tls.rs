//! HTTPS against a local TLS stand-in whose certificate comes from a throwaway CA: it
//! works with `--cacert CA`, and fails clearly without it.

mod support;

use support::*;

fn qlship(args: &[String]) -> (i32, String) {
    run_qlship(args)
}

#[test]
fn rows_arrive_over_https_with_the_ca_file() {
    let (env, ca) = tls_env();
    let (text, expected) = rows(0..2000);
    env.append(&text);
    assert!(
        env.drain(&["--https", "--cacert", ca.to_str().unwrap()])
            .success(),
        "{}",
        env.logs()
    );
    env.assert_exact(&expected);
}

#[test]
fn check_explains_a_certificate_it_cannot_trust() {
    let (env, ca) = tls_env();
    env.append("");
    let url = format!(
        "https://127.0.0.1:{}/queuemetrics/jsonQLoaderApi.do",
        env.qm.port()
    );
    let mut args = vec!["check".to_string()];
    args.extend(env.args(&["--https"]));
    let (code, text) = qlship(&args);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.starts_with(&format!("TLS failure talking to {url}: ")),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("(if the server's certificate comes from a private CA, or this machine has no CA bundle, pass the CA with --cacert FILE)"),
        "{text}"
    );
    let mut args = vec!["check".to_string()];
    args.extend(env.args(&["--https", "--cacert", ca.to_str().unwrap()]));
    assert_eq!(
        qlship(&args),
        (
            0,
            format!("OK: {url} answered; partition \"P001\" is empty\n")
        )
    );
}

#[test]
fn a_daemon_without_the_ca_keeps_retrying_and_sends_nothing() {
    let (env, _) = tls_env();
    let (text, _) = rows(0..10);
    env.append(&text);
    let child = env.spawn(&["--https"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    stop(child);
    assert!(env.rows().is_empty());
    assert!(env.logs().contains("TLS failure"), "{}", env.logs());
}

#[test]
fn a_missing_ca_file_is_refused_with_the_reason() {
    let (code, text) = qlship(&["--cacert".into(), "/nonexistent/ca.pem".into()]);
    assert_eq!(code, 2);
    assert!(
        text.starts_with("qlship: --cacert: cannot read the CA file /nonexistent/ca.pem: "),
        "{text}"
    );
}

#[test]
fn insecure_accepts_any_certificate_and_says_so_at_every_start() {
    let (env, _) = tls_env();
    let warning = "WARN  [qlship::app] --cacert insecure: the QueueMetrics server's certificate is NOT checked";
    let (text, expected) = rows(0..300);
    env.append(&text);
    assert!(
        env.drain(&["--https", "--cacert", "insecure"]).success(),
        "{}",
        env.logs()
    );
    env.assert_exact(&expected);
    let (more, expected) = rows(0..600);
    env.append(&more[text.len()..]);
    assert!(env.drain(&["--https", "--cacert", "insecure"]).success());
    env.assert_exact(&expected);
    assert_eq!(env.logs().matches(warning).count(), 2, "{}", env.logs());

    let mut args = vec!["check".to_string()];
    args.extend(env.args(&["--https", "--cacert", "insecure"]));
    let (code, text) = qlship(&args);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with("OK: ")
            && text.contains("\nqlship: warning: --cacert insecure: the QueueMetrics server's certificate is NOT checked"),
        "{text}"
    );
}
