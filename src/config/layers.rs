//! Where each setting comes from: the command line, else its `SECKILL_*`
//! environment variable, else the `--config` file, else its default.
//!
//! Clap reads the command line and the environment itself (each flag gets
//! the variable `SECKILL_` + its id in capitals). The file's settings are
//! then handed to clap as flags, only for the settings neither of those
//! gave, so that every value, wherever it came from, goes through the same
//! parser and the same checks.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::{effective::Effective, file, secrets, Config};

/// Where a setting's value came from, from the weakest to the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Its default (or unset).
    Default,
    /// The `--config` file.
    File,
    /// Its `SECKILL_*` environment variable.
    Env,
    /// The command line.
    CommandLine,
}

impl Source {
    /// As the effective configuration names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::CommandLine => "command line",
        }
    }
}

/// Why the configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line or an environment variable is wrong, or asks for
    /// `--help` or `--version`: clap says it (and exits) best.
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A key of the file is no setting.
    #[error("config file {path}: unknown key `{key}`{hint}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        /// A nearby key that is one, if any.
        hint: String,
    },
    /// A key of the file has a value its flag refuses.
    #[error("config file {path}: key `{key}`: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// The file's settings do not go with the command line's or the
    /// environment's (e.g. `--redis` given, `redis-cluster` in the file).
    #[error("config file {path} with the command line and environment: {message}")]
    Merged { path: PathBuf, message: String },
    /// A secret's value is refused (from the command line, the environment
    /// or the file); the message names the flag, never the value.
    #[error("--{flag}: the value given is refused (not shown: it is a secret): {reason}")]
    BadSecret { flag: String, reason: String },
    /// A `--*-file` secret cannot be read or is no good.
    #[error("--{flag} {path}: {message}")]
    SecretFile {
        flag: String,
        path: PathBuf,
        message: String,
    },
    /// A secret and the file it may be read from are both given, at the same
    /// level: which one is meant cannot be told.
    #[error("--{value} and --{file} both come from the {level}: give one")]
    SecretTwice {
        value: String,
        file: String,
        /// Where both came from (`command line`, `env`, `file`).
        level: &'static str,
    },
}

/// The configuration, and how to log it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// The settings in force and where each came from, secrets redacted.
    pub effective: Effective,
}

/// The settings a file may not hold: the file itself, and what is no
/// setting.
pub(super) const NOT_SETTINGS: [&str; 3] = ["config", "help", "version"];

/// The server's flags, each with its `SECKILL_*` variable.
pub fn command() -> clap::Command {
    Config::command().mut_args(|arg| {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" || arg.get_env().is_some() {
            return arg;
        }
        let env = format!("SECKILL_{}", id.to_ascii_uppercase());
        // --help prints the value a variable has, except for a secret's.
        let hide = secrets::is_secret(id);
        arg.env(env).hide_env_values(hide)
    })
}

/// The configuration from this process's command line and environment,
/// and the file the first names.
pub fn load() -> Result<Loaded, ConfigError> {
    load_from(std::env::args_os())
}

/// The configuration from `args` (the program's name first), the
/// environment, and the file `args` or the environment name.
pub fn load_from<I, T>(args: I) -> Result<Loaded, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = command();
    let first = cmd.clone().try_get_matches_from(&args).map_err(from_clap)?;
    let mut sources = given(&cmd, &first);
    let path = first.get_one::<PathBuf>("config").cloned();
    if let Some(path) = &path {
        for setting in file::read(&cmd, path)? {
            // The command line and the environment win over the file, for
            // the setting and for every other way of giving the same thing.
            if alternatives(&setting.id).any(|id| sources.contains_key(id)) {
                continue;
            }
            sources.insert(setting.id.clone(), Source::File);
            args.extend(setting.flags.into_iter().map(OsString::from));
        }
    }
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| match &path {
            Some(_) if secrets::refused_secret(&e).is_some() => from_clap(e),
            Some(path) => ConfigError::Merged {
                path: path.clone(),
                message: file::clap_message(&e),
            },
            None => from_clap(e),
        })?;
    let mut config = Config::from_arg_matches(&matches)?;
    let from_files = secrets::resolve(&mut config, &sources)?;
    let effective = Effective::new(&cmd, &matches, &config, &sources, &from_files);
    Ok(Loaded { config, effective })
}

/// Settings that say the same thing in different ways: one from the
/// command line or the environment overrides any of the others in the file
/// (a file with `redis`, started with `--redis-cluster`, uses the cluster).
const ALTERNATIVES: [&[&str]; 1] =
    [&["redis", "redis_file", "redis_cluster", "redis_cluster_file"]];

/// The setting `id` and its alternatives.
fn alternatives(id: &str) -> impl Iterator<Item = &str> {
    let group = ALTERNATIVES.iter().find(|g| g.contains(&id));
    std::iter::once(id).chain(group.into_iter().flat_map(|g| g.iter().copied()))
}

/// clap's error, unless it would show a secret's value.
fn from_clap(e: clap::Error) -> ConfigError {
    match secrets::refused_secret(&e) {
        Some((flag, reason)) => ConfigError::BadSecret { flag, reason },
        None => ConfigError::Args(e),
    }
}

/// The settings the command line and the environment gave, by id.
fn given(cmd: &clap::Command, matches: &ArgMatches) -> BTreeMap<String, Source> {
    cmd.get_arguments()
        .filter_map(|arg| {
            let id = arg.get_id().as_str();
            let source = match matches.value_source(id)? {
                ValueSource::CommandLine => Source::CommandLine,
                ValueSource::EnvVariable => Source::Env,
                _ => return None,
            };
            Some((id.to_owned(), source))
        })
        .collect()
}
