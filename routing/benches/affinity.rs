//! Placeholder; owned by routing-b, who replaces this file with the affinity benchmarks.

fn main() {}
