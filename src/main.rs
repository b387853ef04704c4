//! The `podwire` binary: parses arguments and hands over to [`podwire::cli`].

use clap::Parser;

// The pipeline allocates small, short-lived buffers per flow (stream reassembly, protocol
// facts); mimalloc roughly halves what glibc's allocator costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages for this process: mimalloc asks for them on its arena, and a
    // 2 MiB page is resident (and zeroed) as a whole however little of it is used — it made
    // up a third of the peak memory of `flows` (45 → 32 MB on the 1.5 M-packet benchmark) for
    // no measurable speed. Affects later page faults only; failure just keeps the default.
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
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
