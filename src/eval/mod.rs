//! Data generation, metrics, baselines and the benchmark harness.
