//! Criterion benchmarks live in `benches/benches/`; run them with
//! `cargo bench -p benches`. Figures are recorded in `docs/benchmarks.md`.
