"""densparse on a Ray cluster: encode, build a sharded collection, search it exactly.

Needs the ``ray`` extra (``pip install 'densparse[ray]'``). Modules:

- :mod:`~densparse.distributed.encode`: :func:`encode`, vectors for a Ray Dataset.
- :mod:`~densparse.distributed.build`: :func:`build_collection`, one Ray task per shard.
- :mod:`~densparse.distributed.manifest`: the directory, ``sharded.json``, :func:`shard_of`.
- :mod:`~densparse.distributed.merge`: global BM25 statistics, exact merge, fusion.
- :mod:`~densparse.distributed.shards`: :class:`ShardedCollection` (all shards in one
  process, :func:`open_sharded`).
- :mod:`~densparse.distributed.searcher`: :class:`ShardedSearcher` (shards in Ray actors)
  and :func:`search` (a Dataset of queries).
"""

from densparse.distributed.build import build_collection
from densparse.distributed.encode import encode
from densparse.distributed.manifest import shard_of
from densparse.distributed.merge import Query
from densparse.distributed.searcher import ShardedSearcher, search
from densparse.distributed.shards import ShardedCollection, open_sharded

__all__ = [
    "Query",
    "ShardedCollection",
    "ShardedSearcher",
    "build_collection",
    "encode",
    "open_sharded",
    "search",
    "shard_of",
]
