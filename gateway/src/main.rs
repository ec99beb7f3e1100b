fn main() {
    std::process::exit(hpki_gateway::cli::main());
}
