"""In-process tests: no service, bridge, npm or CLI process (what `make test-fast` runs; tests/conftest.py
fails a test here that starts one)."""
