fn main() -> std::process::ExitCode {
    skulk::cli::main()
}
