fn main() {
    std::process::exit(provenant::cli::main());
}
