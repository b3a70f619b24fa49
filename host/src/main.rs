fn main() -> std::process::ExitCode {
    deployer::cli::main()
}
