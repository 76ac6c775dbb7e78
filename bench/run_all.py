"""Run every benchmark in turn (`make bench`); the peer comparison last, writing its table."""

from bench import mcp_hop, peers, pool, rerank, service, similarity

if __name__ == "__main__":
    service.main()
    pool.main()
    mcp_hop.main()
    similarity.main()
    rerank.main()
    peers.main(["--write"])
