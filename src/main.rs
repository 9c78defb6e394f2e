/// Chosen for the firmware (musl's allocator gives memory back to the kernel so
/// reluctantly that qlship's peak RSS grew with every row caught up) and used by every
/// build, so that the tests run the allocator the boards run (src/allocator.rs).
#[global_allocator]
static ALLOCATOR: qlship::allocator::Allocator = qlship::allocator::Allocator;

fn main() {
    std::process::exit(qlship::app::main(std::env::args().skip(1).collect()));
}
