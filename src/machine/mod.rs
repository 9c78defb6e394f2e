//! The pure state machines that decide what qlship does: no clock reads, no files, no
//! sockets, no threads. Each takes events and `now` and returns actions; the daemon
//! drives them with real files and sockets, and `tests/sim/` drives them in a simulated
//! world (virtual clock, journal, server) through crashes and faults by the hundred
//! thousand.

pub mod bind;
pub mod generations;
pub mod read;
pub mod shares;
pub mod upload;

#[cfg(test)]
mod tests;
