"""The vector index, read side: derived from `segments.embedding`, never the source of truth.

- filters: what each vector carries for filters (video, times, kind) and how a filter tests it
- faiss_ops: building and searching FAISS indexes (pure; the bench measures this code)
- state: the files on disk (main, its attrs, the state) and their atomic writes
- reader: the loaded index, cached, and `search`

The writer that keeps it in step with the database is `indexer.index_sync`.
"""
