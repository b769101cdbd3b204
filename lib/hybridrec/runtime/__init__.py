"""The runtime layer: the one SparkSession builder, the file system, fault injection, and the
driver/executor plumbing every stage shares (customer-partitioned batch streaming, Arrow
collection of vectors, timing). Imports nothing above it."""
