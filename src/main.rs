//! The `fastmanager` binary: the command line lives in the library
//! (`fastmanager::cli`), so that `python -m fastmanager` runs the same one.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(fastmanager::cli::run(std::env::args_os()))
}
