//! 64-bit atomic counters on every board. 32-bit MIPS (the mipsel routers) has no 64-bit
//! atomic instructions and std leaves `AtomicU64` out there, so a mutex stands in: these
//! counters are touched a few times a second, never in a hot loop.

#[cfg(target_has_atomic = "64")]
pub use std::sync::atomic::{AtomicI64, AtomicU64};

#[cfg(not(target_has_atomic = "64"))]
pub use fallback::{AtomicI64, AtomicU64};

#[cfg(not(target_has_atomic = "64"))]
mod fallback {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    macro_rules! locked {
        ($name:ident, $int:ty) => {
            #[derive(Debug, Default)]
            pub struct $name(Mutex<$int>);

            impl $name {
                pub const fn new(v: $int) -> Self {
                    Self(Mutex::new(v))
                }
                fn lock(&self) -> std::sync::MutexGuard<'_, $int> {
                    self.0.lock().unwrap_or_else(|e| e.into_inner())
                }
                pub fn load(&self, _: Ordering) -> $int {
                    *self.lock()
                }
                pub fn store(&self, v: $int, _: Ordering) {
                    *self.lock() = v;
                }
                pub fn fetch_add(&self, v: $int, _: Ordering) -> $int {
                    let mut g = self.lock();
                    let old = *g;
                    *g = old.wrapping_add(v);
                    old
                }
            }
        };
    }

    locked!(AtomicU64, u64);
    locked!(AtomicI64, i64);
}
