//! Setups that work but leave a door open, said at every start (in the log) and by
//! `qlship check` (on stderr), so that they cannot be forgotten on a box.

use crate::config::{Settings, Trust};

/// The warnings a configuration deserves, one line each.
pub fn for_settings(s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if s.trust == Trust::Insecure {
        out.push(crate::tls::INSECURE_WARNING.to_string());
    }
    if s.feedback.is_zero() {
        return out;
    }
    // Feedback is polled from every enabled target that does not say `noactions`.
    let polled: Vec<_> = s
        .targets()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !t.disabled && !t.noactions)
        .collect();
    let plain: Vec<String> = polled
        .iter()
        .filter(|t| !t.https)
        .map(|t| t.url())
        .collect();
    if !plain.is_empty() {
        out.push(format!(
            "--feedback over plain HTTP ({}): anyone on the network path can pose as QueueMetrics and hand this PBX actions to run (within the AMI policy); use --https",
            plain.join(", ")
        ));
    }
    if s.trust == Trust::Insecure && polled.iter().any(|t| t.https) {
        out.push(
            "--feedback with --cacert insecure: anyone on the network path can pose as QueueMetrics and hand this PBX actions to run (within the AMI policy); give the CA file"
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_args, Command};

    fn settings(args: &[&str]) -> Settings {
        match parse_args(args.iter().map(|s| s.to_string())).unwrap() {
            Command::Run(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_http_feedback_is_warned_about_and_https_is_not() {
        assert_eq!(for_settings(&settings(&[])), Vec::<String>::new());
        let w = for_settings(&settings(&["--feedback", "5", "-h", "qm.example"]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("--feedback over plain HTTP (http://qm.example:8080/queuemetrics/jsonQLoaderApi.do): anyone on the network path"),
            "{w:?}"
        );
        assert_eq!(
            for_settings(&settings(&["--feedback", "5", "--https"])),
            Vec::<String>::new()
        );
        let w = for_settings(&settings(&[
            "--feedback",
            "5",
            "--https",
            "--cacert",
            "insecure",
        ]));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].starts_with("--feedback with --cacert insecure"));
    }
}
