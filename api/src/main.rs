//! The `gsp-gateway` binary.

fn main() -> std::process::ExitCode {
    gsp_gateway_api::cli::run()
}
