//! The firmware's global allocator: dlmalloc for everyday allocations, the kernel's own
//! pages for big ones.
//!
//! dlmalloc carves every allocation, however big, out of its segments and never gives
//! back a free chunk in the middle of one. sled allocates a 512 KiB log buffer each time
//! it seals one (several per second in a catch-up) between small, long-lived nodes, so the
//! segments grew to 12-14 MiB resident around a live heap of about 5 MiB. Big blocks
//! mapped on their own go back to the kernel when freed, as glibc's malloc does with its
//! mmap threshold; a sealed buffer costs one mmap and one munmap.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

/// Blocks from this size up are mapped on their own. Well below sled's 512 KiB buffers,
/// and above the batch and request buffers that live and die many times per second
/// (a fresh mapping costs page faults; a reused heap chunk does not).
pub const MMAP_THRESHOLD: usize = 128 << 10;

pub struct Allocator;

fn page_size() -> usize {
    // Asked, not assumed: aarch64 kernels may use 16 or 64 KiB pages.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|n| n & !(to - 1))
}

fn mapped(layout: &Layout) -> bool {
    layout.size() >= MMAP_THRESHOLD
}

/// Maps `layout.size()` bytes at `layout.align()`, zeroed. Alignments above the page
/// (sled's buffers ask for 8 KiB) map the excess and unmap what lies around the block.
unsafe fn map(layout: &Layout) -> *mut u8 {
    let page = page_size();
    let Some(size) = round_up(layout.size(), page) else {
        return ptr::null_mut();
    };
    let extra = layout.align().saturating_sub(page);
    let Some(len) = size.checked_add(extra) else {
        return ptr::null_mut();
    };
    let base = libc::mmap(
        ptr::null_mut(),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if base == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let base = base as usize;
    let start = round_up(base, layout.align().max(page)).unwrap_or(base);
    if start > base {
        libc::munmap(base as *mut libc::c_void, start - base);
    }
    let tail = base + len - (start + size);
    if tail > 0 {
        libc::munmap((start + size) as *mut libc::c_void, tail);
    }
    start as *mut u8
}

unsafe fn unmap(ptr: *mut u8, layout: &Layout) {
    if let Some(size) = round_up(layout.size(), page_size()) {
        libc::munmap(ptr as *mut libc::c_void, size);
    }
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            map(&layout)
        } else {
            dlmalloc::GlobalDlmalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            map(&layout) // fresh anonymous pages are zero
        } else {
            dlmalloc::GlobalDlmalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            unmap(ptr, &layout)
        } else {
            dlmalloc::GlobalDlmalloc.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let page = page_size();
        match (mapped(&layout), mapped(&new_layout)) {
            (false, false) => dlmalloc::GlobalDlmalloc.realloc(ptr, layout, new_size),
            // A growing Vec: the kernel moves the pages instead of copying the bytes.
            (true, true) if layout.align() <= page => {
                let (Some(old), Some(new)) =
                    (round_up(layout.size(), page), round_up(new_size, page))
                else {
                    return ptr::null_mut();
                };
                if old == new {
                    return ptr;
                }
                let moved = libc::mremap(ptr as *mut libc::c_void, old, new, libc::MREMAP_MAYMOVE);
                if moved == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    moved as *mut u8
                }
            }
            _ => {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(p: *mut u8, n: usize, seed: u8) {
        for i in 0..n {
            unsafe { *p.add(i) = seed.wrapping_add(i as u8) }
        }
    }

    fn holds(p: *const u8, n: usize, seed: u8) -> bool {
        (0..n).all(|i| unsafe { *p.add(i) } == seed.wrapping_add(i as u8))
    }

    /// Whether `p` lies in one of this process's mappings.
    fn is_mapped(p: *const u8) -> bool {
        let a = p as usize;
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.split_once('-'))
            .any(|(lo, hi)| {
                let lo = usize::from_str_radix(lo, 16).unwrap();
                let hi = usize::from_str_radix(hi, 16).unwrap();
                (lo..hi).contains(&a)
            })
    }

    #[test]
    fn big_blocks_are_aligned_zeroed_and_given_back() {
        let a = Allocator;
        for (size, align) in [(MMAP_THRESHOLD, 8), (512 << 10, 8192), (700_001, 64 << 10)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = unsafe { a.alloc_zeroed(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "{size} at {align}");
            assert!((0..size).all(|i| unsafe { *p.add(i) } == 0));
            fill(p, size, 7);
            assert!(holds(p, size, 7));
            unsafe { a.dealloc(p, layout) };
            // Another test's thread may be given the same addresses at once (a fresh,
            // zeroed mapping): ours, still mapped, would still hold the pattern.
            let ours_still_mapped = is_mapped(p) && holds(p, page_size().min(size), 7);
            assert!(!ours_still_mapped, "{size} bytes were not unmapped");
        }
    }

    #[test]
    fn small_blocks_stay_in_the_heap() {
        let a = Allocator;
        let layout = Layout::from_size_align(MMAP_THRESHOLD - 1, 16).unwrap();
        let p = unsafe { a.alloc(layout) };
        fill(p, layout.size(), 3);
        let q = unsafe { a.alloc(Layout::from_size_align(24, 8).unwrap()) };
        assert!(holds(p, layout.size(), 3));
        unsafe {
            a.dealloc(q, Layout::from_size_align(24, 8).unwrap());
            a.dealloc(p, layout);
        }
        // dlmalloc keeps a freed chunk in its segment; a block mapped on its own would
        // be gone.
        assert!(is_mapped(p), "a block under the threshold was unmapped");
    }

    #[test]
    fn realloc_keeps_the_bytes_across_the_threshold_both_ways() {
        let a = Allocator;
        for align in [1, 16, 8192] {
            let mut layout = Layout::from_size_align(1000, align).unwrap();
            let mut p = unsafe { a.alloc(layout) };
            fill(p, 1000, 9);
            // small -> big -> bigger (mremap) -> same pages -> small
            for size in [200_000, 1_000_000, 1_000_100, 500] {
                p = unsafe { a.realloc(p, layout, size) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert!(holds(p, 500, 9), "to {size} at {align}");
                layout = Layout::from_size_align(size, align).unwrap();
                if size > 1000 {
                    unsafe { ptr::write_bytes(p.add(1000), 0xAA, size - 1000) };
                }
            }
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn a_vec_grown_byte_by_byte_through_the_threshold_is_intact() {
        // The realloc path Vec takes, through the allocator itself rather than the
        // test binary's global one.
        let a = Allocator;
        let mut layout = Layout::from_size_align(16, 1).unwrap();
        let mut p = unsafe { a.alloc(layout) };
        let mut len = 0;
        while len < 3 * MMAP_THRESHOLD {
            if len == layout.size() {
                let size = layout.size() * 2;
                p = unsafe { a.realloc(p, layout, size) };
                layout = Layout::from_size_align(size, 1).unwrap();
            }
            unsafe { *p.add(len) = (len % 251) as u8 };
            len += 1;
        }
        assert!((0..len).all(|i| unsafe { *p.add(i) } == (i % 251) as u8));
        unsafe { a.dealloc(p, layout) };
    }
}
