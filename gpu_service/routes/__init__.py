"""The service's HTTP routes, one module per route family, each exposing a FastAPI `APIRouter`
named `router` that `gpu_service/app.py` includes: `embed` (/embed and OpenAI's /v1/embeddings),
`similarity`, `bertscore` (/bertscore, /bertscore/idf), `rerank` (Cohere's /v1/rerank, TEI's
/rerank) and `status` (/health, /info, /status, /cancel, /metrics). `common` holds what they share.

A new capability is a new module here with its `router`, and one `include(app, <module>.router)` line in app.py.
"""
