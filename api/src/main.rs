//! The `gsp-gateway` binary.

/// mimalloc rather than glibc's malloc: a forwarded call allocates and frees a few dozen small blocks
/// (request, headers, buffers), and glibc's allocator spent about a seventh of its user time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gsp_gateway_api::cli::run()
}
