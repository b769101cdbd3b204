"""DataFrame -> ``tf.data.Dataset``: the one place that knows the training-data loader.

Petastorm (unmaintained upstream) sits behind :func:`tf_dataset` only: it materialises the
DataFrame as Parquet under a cache URL with Spark (executors write; nothing is collected to the
driver) and streams it back into TensorFlow. Swapping the loader means rewriting this module.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

from pyspark.sql import DataFrame, SparkSession

LOADER = "petastorm"


@contextlib.contextmanager
def tf_dataset(spark: SparkSession, df: DataFrame, cache_url: str, batch_size: int,
               shuffle_buffer: int = 0, seed: int = 0) -> Iterator[tuple[Any, int]]:
    """A repeating, batched ``tf.data.Dataset`` of ``df``'s columns (a namedtuple per batch) and
    the row count; the materialised files are deleted on exit.

    Rows come back in the same order every time (one reader thread, row groups unshuffled);
    with ``shuffle_buffer`` they are shuffled by a seeded buffer, so a seed reproduces training.
    Columns arrive with their Spark types (callers use float32 for features and labels).
    """
    # petastorm calls pyarrow APIs that pyarrow 14 marks deprecated: silence those, nothing else
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_url)
    converter = make_spark_converter(df, dtype=None)  # callers hand over float32 columns already
    # petastorm takes the materialised files in the order of Spark's inputFiles(), a set: the order
    # changed from run to run, and with it the rows fed to training. Sorted, the part files
    # (part-00000-..., part-00001-...) come back in the DataFrame's partition order.
    converter.file_urls = sorted(converter.file_urls)
    try:
        with converter.make_tf_dataset(batch_size=batch_size, num_epochs=None, workers_count=1,
                                       shuffle_row_groups=False) as ds:
            if shuffle_buffer:
                ds = ds.unbatch().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
            yield ds, len(converter)
    finally:
        converter.delete()
