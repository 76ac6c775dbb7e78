"""The service's tasks, one folder each: its routes, its service (what a request does, independent of
HTTP) and its engine (the model on the device)."""
