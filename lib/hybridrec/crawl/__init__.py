"""The crawl layer: the crawl folder's layout, TMDB's record formats, the TMDB crawler and the
seeded demo crawl. Pure Python (no Spark)."""
