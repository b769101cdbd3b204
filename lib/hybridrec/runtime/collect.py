"""Driver-side collection of vector columns through Arrow (no Python object per row)."""
from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.errors import UserError


def collect_vectors(vectors: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, float32 matrix) of (item_id, vector) on the driver, through Arrow: the vector
    column's flat values become the matrix without a Python object per row."""
    table = vectors.select(S.ITEM_ID, F.col(S.VECTOR).cast("array<float>").alias(S.VECTOR)).toArrow()
    ids = table.column(S.ITEM_ID).to_numpy().astype(np.int64)
    lists = table.column(S.VECTOR).combine_chunks()
    lengths = np.diff(np.asarray(lists.offsets)) if len(ids) else np.zeros(0, np.int64)
    if len(ids) and (lengths != lengths[0]).any():
        raise UserError("similarity: item vectors have different lengths; re-embed with one extractor")
    dims = int(lengths[0]) if len(ids) else 1
    matrix = np.asarray(lists.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), dims)
    return ids, matrix
