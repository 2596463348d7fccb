//! The `temporal-bff` binary: parses the command line and hands over to the library.

use clap::Parser;

/// jemalloc instead of glibc's allocator. A tree answer builds and drops several megabytes of
/// short-lived values on whichever worker thread runs it; glibc kept those pages in its
/// per-thread arenas (89–93 MiB resident under the soak's mixed load, 143 MiB with
/// `MALLOC_ARENA_MAX=2`), jemalloc's decay hands them back (33–39 MiB; mimalloc: 68–75 MiB,
/// with 68 already at idle). Figures and commands in BENCHMARKS.md (issue 25, P6).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    temporal_bff::cli::run(temporal_bff::cli::Cli::parse())
}
