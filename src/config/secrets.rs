//! Secrets: the admin token and the store URLs, which may carry a
//! password. Each may come as itself (flag, environment, config file) or
//! from a file of its own (`--admin-token-file PATH`, as systemd's
//! `LoadCredential=` provides), so that none has to be on a command line.
//!
//! A secret and its file obey the same precedence as any setting: the one
//! from the stronger source wins. Both from the same source is a mistake
//! the server refuses rather than guess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::file::read_limited;
use super::layers::{ConfigError, Source};
use super::{Config, Secret, StoreUrl};

/// A secret, and the flag naming a file that holds it.
pub struct SecretFlag {
    /// The secret's flag id (`admin_token`).
    pub id: &'static str,
    /// Its file's flag id (`admin_token_file`).
    pub file: &'static str,
    path: fn(&mut Config) -> &mut Option<PathBuf>,
    /// Sets the secret from a file's text, checked as its flag would be.
    set: fn(&mut Config, &str) -> Result<(), String>,
}

/// Every secret the server takes.
pub const SECRETS: [SecretFlag; 4] = [
    SecretFlag {
        id: "admin_token",
        file: "admin_token_file",
        path: |c| &mut c.admin_token_file,
        set: |c, text| {
            c.admin_token = Some(Secret::from_str(text)?);
            Ok(())
        },
    },
    SecretFlag {
        id: "redis",
        file: "redis_file",
        path: |c| &mut c.redis_file,
        set: |c, text| {
            c.redis = Some(StoreUrl::new(text));
            Ok(())
        },
    },
    SecretFlag {
        id: "redis_cluster",
        file: "redis_cluster_file",
        path: |c| &mut c.redis_cluster_file,
        set: |c, text| {
            // As the flag takes them: comma-separated.
            c.redis_cluster = Some(text.split(',').map(|s| StoreUrl::new(s.trim())).collect());
            Ok(())
        },
    },
    SecretFlag {
        id: "mysql",
        file: "mysql_file",
        path: |c| &mut c.mysql_file,
        set: |c, text| {
            c.mysql = Some(StoreUrl::new(text));
            Ok(())
        },
    },
];

/// The flag with this id holds a secret (not a file's path).
pub fn is_secret(id: &str) -> bool {
    SECRETS.iter().any(|s| s.id == id)
}

/// When clap refuses a secret's value (an admin token too long), the flag
/// and clap's reason, for an error that does not repeat the value as
/// clap's own message does.
pub fn refused_secret(e: &clap::Error) -> Option<(String, String)> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        // Without the context clap may still show the value: never
        // guess it is not a secret's.
        return Some(("?".into(), String::new()));
    };
    // "--admin-token <TOKEN>"
    let flag = arg.trim_start_matches('-').split([' ', '=']).next()?;
    if !is_secret(&flag.replace('-', "_")) {
        return None;
    }
    let reason = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_else(|| "not accepted".into());
    Some((flag.to_owned(), reason))
}

/// Replaces every secret whose file wins with the file's content; returns
/// the secrets read from files, with their paths.
pub fn resolve(
    config: &mut Config,
    sources: &BTreeMap<String, Source>,
) -> Result<Vec<(&'static str, PathBuf)>, ConfigError> {
    let mut read = Vec::new();
    for flag in &SECRETS {
        let (secret, file) = (flag.id, flag.file);
        let Some(path) = (flag.path)(config).clone() else {
            continue;
        };
        let source_of = |id: &str| sources.get(id).copied().unwrap_or(Source::Default);
        let (value_source, file_source) = (source_of(secret), source_of(file));
        // Only a value given by someone counts: the secrets have no
        // defaults.
        let value_given = value_source > Source::Default;
        if value_given && value_source == file_source {
            return Err(ConfigError::SecretTwice {
                value: long(secret),
                file: long(file),
                level: file_source.as_str(),
            });
        }
        if value_given && value_source > file_source {
            // The stronger source names the secret itself: the file is not
            // read, and not reported as used.
            *(flag.path)(config) = None;
            continue;
        }
        let text = read_secret(file, &path)?;
        (flag.set)(config, &text).map_err(|message| ConfigError::SecretFile {
            flag: long(file),
            path: path.clone(),
            message,
        })?;
        read.push((secret, path));
    }
    Ok(read)
}

/// The largest secret file read (a token is at most 255 bytes; a list of
/// cluster seeds a few kilobytes): a mistake (`/dev/zero`) fails instead of
/// filling the memory.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// One secret from `path`: the whole file but a trailing line end (an
/// editor adds one; no secret ends with one).
fn read_secret(file: &str, path: &Path) -> Result<String, ConfigError> {
    let failed = |message: String| ConfigError::SecretFile {
        flag: long(file),
        path: path.to_owned(),
        message,
    };
    let mut text = read_limited(path, MAX_SECRET_FILE).map_err(|e| failed(e.to_string()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.trim().is_empty() {
        return Err(failed("the file holds no secret (empty or blank)".into()));
    }
    if text.contains(['\n', '\r']) {
        return Err(failed("more than one line: one secret per file".into()));
    }
    Ok(text)
}

/// A flag's id as the operator types it.
fn long(id: &str) -> String {
    id.replace('_', "-")
}
