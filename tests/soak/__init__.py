"""Long runs, only with `make soak`: load and faults for minutes, the Ray Serve cluster."""
