fn main() {
    std::process::exit(qlship::app::main(std::env::args().skip(1).collect()));
}
