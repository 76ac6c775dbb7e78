"""The repository's own rules: import layers, hygiene, packaging, README snippets, deploy files, benchmarks."""
