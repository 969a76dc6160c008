//! Placeholder for the affinity benchmarks (key extraction, hashing, affinity plans).

fn main() {}
