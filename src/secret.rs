//! A password or AMI secret: its `Debug` prints `***`, so no `{:?}` of a settings or
//! target struct, in a log line or a test failure, can show it. The text is reached only
//! through [`Secret::expose`], which makes every place that sends it easy to find.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself: only for the request or the AMI Login that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.to_string())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_text() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    ***,\n)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn no_debug_of_the_settings_or_a_target_shows_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.pl");
        std::fs::write(
            &rules,
            "({ruleName=>'r', queueStarts=>1, queueToken=>'q', targetHost=>'h', targetPass=>'rule-pass-1', targetToken=>'P'});\n",
        )
        .unwrap();
        let config = dir.path().join("qlship.conf");
        std::fs::write(
            &config,
            format!(
                "QMPASS=qm-pass-2\nAMI_USER=qlship\nAMI_SECRET=ami-secret-3\nRULES={}\n",
                rules.display()
            ),
        )
        .unwrap();
        let args = ["--config", config.to_str().unwrap(), "-w", "flag-pass-4"];
        let settings = match crate::config::parse_args(args.map(String::from)).unwrap() {
            crate::config::Command::Run(s) => s,
            other => panic!("{other:?}"),
        };
        let (split_file, split) = settings.split.as_ref().unwrap();
        assert_eq!(split_file, &rules);
        assert_eq!(split.targets[0].password.expose(), "rule-pass-1");
        assert_eq!(settings.password.expose(), "flag-pass-4");
        let shown = [
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{:?}", settings.targets()),
            format!("{:?}", settings.single_target()),
            format!("{:?}", crate::config::Command::Check(settings.clone())),
        ];
        for text in shown {
            for secret in ["rule-pass-1", "qm-pass-2", "ami-secret-3", "flag-pass-4"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("***"), "{text}");
        }
    }
}
