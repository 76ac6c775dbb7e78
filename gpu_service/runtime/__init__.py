"""What a running service is made of: its state (device, model registry, jobs, the tasks' services),
the lifespan that builds and stops it, the jobs `/status` shows, the metrics, and the device."""
