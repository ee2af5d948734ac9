//! The `ftpcalc` binary: the allocator, then the command line ([`cli`]), which calls the
//! library. No protocol logic lives here.

mod cli;

use std::process::ExitCode;

/// jemalloc: the routed `SITE ADD` allocates on every hop, and with glibc's allocator 13% of
/// the server's samples were malloc/free. Measured with `ftpcalc bench cmd --command
/// "SITE ADD 2 3" -c 64`: 46k ops/s with glibc, 61k with jemalloc (mimalloc: 58k, but 31 KiB
/// instead of 23 KiB per idle session; jemalloc keeps 23). The library leaves the choice to
/// embedders.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::main()
}
