//! The `s3linkfs` binary: parse the arguments, load the profile, run one
//! command, print, and choose the exit code.
//!
//! Exit codes: 0 success; 2 bad usage or configuration (clap errors,
//! [`ConfigError`], [`CliError`]); 1 anything else. Errors are one line on
//! stderr, prefixed `s3linkfs: `.
//!
//! `presign` starts no async runtime and no logging: it is a pure computation
//! and must stay a few milliseconds per call.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Parser;

use s3linkfs::cli::{Cli, CliError, Command, mount_request, presign_url};
use s3linkfs::config::{self, ConfigError, Environment, LoadOptions, Profile};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version land here too, with exit code 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("s3linkfs: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 2 for problems with the user's input (usage, configuration), 1 otherwise.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.is::<ConfigError>() || c.is::<CliError>())
    {
        2
    } else {
        1
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = LoadOptions {
        config_file: cli.config,
        profile: cli.profile,
    };
    match cli.command {
        Command::Presign(args) => {
            let profile = load_profile(&opts)?;
            let url = presign_url(&args, &profile, SystemTime::now())?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{url}")
                .and_then(|()| out.flush())
                .context("writing the URL to stdout")?;
        }
        Command::Mount(args) => {
            let profile = load_profile(&opts)?;
            let log_file = args.log_file.clone().or(profile.mount.log_file.clone());
            let req = mount_request(&args, profile)?;
            init_logging(log_file.as_deref())?;
            s3linkfs::mount::run(req)?;
        }
    }
    Ok(())
}

/// Logs to `file` or stderr, filtered by RUST_LOG (default: info for
/// s3linkfs, warn for the rest, error for fuser, which warns about an
/// unmount already done by `fusermount3 -u`).
fn init_logging(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,s3linkfs=info,fuser=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init()
        }
    }
    Ok(())
}

/// The selected profile, with the loader's warnings printed on stderr.
fn load_profile(opts: &LoadOptions) -> Result<Profile, ConfigError> {
    let loaded = config::load(opts, &Environment::from_process())?;
    for warning in &loaded.warnings {
        eprintln!("s3linkfs: {warning}");
    }
    Ok(loaded.profile)
}
