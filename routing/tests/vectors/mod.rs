//! Reading the golden vector files in `testdata/` (see its README for provenance).

#![allow(dead_code, clippy::panic)]

/// Data rows of a vector file: blank and `#` lines skipped, columns split on tabs. Empty
/// trailing columns are kept (an empty payload is a real test case).
pub fn rows(name: &str) -> Vec<Vec<String>> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert!(!rows.is_empty(), "{name} has no data rows");
    rows
}

/// Bytes from lowercase or uppercase hex.
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{s:?}: {e}")))
        .collect()
}
