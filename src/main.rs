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

use s3linkfs::cli::{Cli, CliError, Command, presign_url};
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
        } // `Command::Mount(args)`: load the profile, init logging, build the runtime, mount.
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
