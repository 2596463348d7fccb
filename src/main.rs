//! The `temporal-bff` binary: parses the command line and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    temporal_bff::cli::run(temporal_bff::cli::Cli::parse())
}
