"""Run every benchmark in turn (`make bench`)."""

from bench import mcp_hop, pool, service, similarity

if __name__ == "__main__":
    service.main()
    pool.main()
    mcp_hop.main()
    similarity.main()
