/// The firmware is linked against musl, whose allocator gives memory back to the kernel
/// so reluctantly that qlship's peak RSS grew with every row caught up; dlmalloc does not.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    std::process::exit(qlship::app::main(std::env::args().skip(1).collect()));
}
