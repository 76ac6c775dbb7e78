"""Run every benchmark in turn (`make bench`); the peer comparison last, writing its table."""

from bench import bridge_cpu, mcp_hop, peers, pool, rerank, service, similarity

if __name__ == "__main__":
    service.main()
    pool.main()
    mcp_hop.main()
    bridge_cpu.main()
    similarity.main()
    rerank.main()
    peers.main(["--write"])
