//! The seckill-bench command: parses the flags, runs the scenario, prints
//! the report. Exits 1 if the run could not be made or its verification
//! failed (oversold, or an acknowledged order lost; for lifecycle, an order
//! not paid or cancelled as it should be, or a unit neither paid nor back
//! on sale; for attack, the normal client saw errors a healthy server would
//! not cause).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use seckill_bench::{plot, run, Cli, Output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A scenario's thousand connections need more open files than the 1024
    // a shell usually hands down: up to the hard limit, as the server does.
    if let Err(e) = rlimit::increase_nofile_limit(1 << 20) {
        eprintln!("seckill-bench: cannot raise the open-files limit: {e}");
    }
    match bench(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("seckill-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the run passed.
fn bench(cli: &Cli) -> anyhow::Result<bool> {
    let output = run(cli)?;
    if cli.common.json {
        println!("{}", output.json());
    } else {
        print!("{}", output.text());
    }
    if let Some(path) = &cli.common.plot {
        match &output {
            Output::Sweep(sweep) => sweep.draw(path),
            _ => plot::draw(path, &output.reports()),
        }
        .with_context(|| format!("drawing {}", path.display()))?;
    }
    if !output.passed() {
        eprintln!("seckill-bench: {}", output.failure());
    }
    Ok(output.passed())
}
