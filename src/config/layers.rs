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
    let first = cmd.clone().try_get_matches_from(&args)?;
    let mut sources = given(&cmd, &first);
    let path = first.get_one::<PathBuf>("config").cloned();
    if let Some(path) = &path {
        for setting in file::read(&cmd, path)? {
            // The command line and the environment win over the file.
            if sources.contains_key(setting.id.as_str()) {
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
            Some(path) => ConfigError::Merged {
                path: path.clone(),
                message: file::clap_message(&e),
            },
            None => ConfigError::Args(e),
        })?;
    let mut config = Config::from_arg_matches(&matches)?;
    let from_files = secrets::resolve(&mut config, &sources)?;
    let effective = Effective::new(&cmd, &matches, &config, &sources, &from_files);
    Ok(Loaded { config, effective })
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
