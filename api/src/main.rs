//! The `pgplane` binary: parse the command line, run the command.

fn main() -> std::process::ExitCode {
    // Each password check (argon2) takes a 19 MiB block. glibc's dynamic
    // mmap threshold would soon serve such blocks from the heap and keep
    // them after the check; a fixed threshold returns them to the system.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    // A file-size limit (RLIMIT_FSIZE) must fail the write with EFBIG, which
    // the stores answer as a write error (503), not kill the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    pgplane::cli::main()
}
