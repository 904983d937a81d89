//! The effective configuration, as logged at start: every setting in force,
//! where it came from unless it is the default, and no secret (invariant 5):
//! the admin token shows as `<redacted>`, a store URL's password as `***`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use clap::ArgMatches;

use super::layers::{Source, NOT_SETTINGS};
use super::secrets::SECRETS;
use super::Config;
use crate::redact;

/// The settings in force, in the order of `--help`, ready to log.
#[derive(Debug, Clone)]
pub struct Effective(Vec<Shown>);

#[derive(Debug, Clone)]
struct Shown {
    /// The long flag (`redis-wait-timeout`).
    name: String,
    /// Its value, secrets redacted.
    value: String,
    /// Where it came from, unless the default.
    from: Option<String>,
}

impl Effective {
    /// From the parsed flags (`matches`), and the config they made, whose
    /// secrets may have been read from files (`from_files`).
    pub(super) fn new(
        cmd: &clap::Command,
        matches: &ArgMatches,
        config: &Config,
        sources: &BTreeMap<String, Source>,
        from_files: &[(&'static str, PathBuf)],
    ) -> Effective {
        let mut shown = Vec::new();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(name) = arg.get_long() else { continue };
            if id == "help" || id == "version" {
                continue;
            }
            let source = sources.get(id).copied().unwrap_or(Source::Default);
            let from = (source != Source::Default).then(|| source.as_str().to_owned());
            if let Some(secret) = SECRETS.iter().find(|s| s.id == id) {
                let Some(value) = redacted(config, id) else {
                    continue;
                };
                let from = match from_files.iter().find(|(read, _)| *read == secret.id) {
                    Some((_, path)) => Some(format!("--{} {}", long(secret.file), path.display())),
                    None => from,
                };
                shown.push(Shown {
                    name: name.to_owned(),
                    value,
                    from,
                });
                continue;
            }
            if SECRETS.iter().any(|s| s.file == id) {
                // Shown with the secret it holds.
                continue;
            }
            let Some(raw) = matches.get_raw(id) else {
                continue;
            };
            let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
            shown.push(Shown {
                name: name.to_owned(),
                value: values.join(","),
                from: from.filter(|_| !NOT_SETTINGS.contains(&id)),
            });
        }
        Effective(shown)
    }
}

/// A secret's value as it may be logged, if it is set.
fn redacted(config: &Config, id: &str) -> Option<String> {
    match id {
        "admin_token" => config.admin_token.as_ref().map(|_| "<redacted>".to_owned()),
        "redis" => config.redis.as_deref().map(redact::url),
        "redis_cluster" => config.redis_cluster.as_ref().map(|seeds| {
            let shown: Vec<String> = seeds.iter().map(|s| redact::seed(s)).collect();
            shown.join(",")
        }),
        "mysql" => config.mysql.as_deref().map(redact::mysql),
        // A secret this function does not know is never shown.
        _ => Some("<redacted>".to_owned()),
    }
}

fn long(id: &str) -> String {
    id.replace('_', "-")
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", s.name, s.value)?;
            if let Some(from) = &s.from {
                write!(f, " ({from})")?;
            }
        }
        Ok(())
    }
}
