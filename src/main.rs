//! The `podwire` binary: parses arguments and hands over to [`podwire::cli`].

use clap::Parser;

// The pipeline allocates small, short-lived buffers per flow (stream reassembly, protocol
// facts); mimalloc roughly halves what glibc's allocator costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = podwire::cli::Cli::parse();
    let code = match podwire::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            // A closed pipe (`podwire flows … | head`) is not an error worth reporting.
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                0
            } else {
                eprintln!("podwire: {error:#}");
                1
            }
        }
    };
    std::process::exit(code);
}
