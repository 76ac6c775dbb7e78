"""What the bridge's front ends call (`GpuClient`): tasks sharded over the pool, shard answers merged,
results and the fleet's views as typed values."""
