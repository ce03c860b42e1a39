"""Ranking a gallery index for query embeddings: exact prefix search through a ranking engine
(``exact``: faiss or torch, owned by a :class:`~rareid.deploy.search.exact.Searcher`) and
k-reciprocal re-ranking (``rerank``)."""
