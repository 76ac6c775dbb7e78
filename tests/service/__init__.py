"""The GPU service as a user runs it: `gpu-service` processes on loopback, over real HTTP."""
