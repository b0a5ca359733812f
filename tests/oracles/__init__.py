"""Reference implementations the tests (and benchmarks) check crownq against; never shipped."""
