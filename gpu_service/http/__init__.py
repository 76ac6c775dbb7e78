"""The service's HTTP layer, shared by every task: `serve` (the one path a compute request takes:
ready, cancellable, observed, timing headers), the error answers (`handlers`), the middleware
that runs before a body is parsed (`middleware/`), and the service's views of itself (`status`).
It never imports torch: the tasks and the runtime own the device."""
