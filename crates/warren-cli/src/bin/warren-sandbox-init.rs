//! The in-sandbox init, built beside `warren` so the two always ship together.

fn main() -> std::process::ExitCode {
    warren_sandbox_init::main()
}
