"""``hybridrec`` command: one entry for every job, plus ``sql`` for a quick analyst query.

    hybridrec pipeline [--conf FILE] [--set k=v ...]   the whole pipeline (README's main command)
    hybridrec ingest|embed|train|similarity|recommend|evaluate|demo|crawl    one stage
    hybridrec views | maintenance                        the analyst views; retention, OPTIMIZE, VACUUM
    hybridrec sql "SELECT ..." [--format table|csv|json] [--output FILE] [--limit N] [--conf FILE]
                                                         query the tables by name
    hybridrec jars                                       Delta's jars, comma-separated, for spark-submit --jars
                                                         (resolved once per machine, quietly; see runtime/jars.py)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from pyspark.sql import DataFrame

from hybridrec.jobs import (crawl, demo, embed, evaluate, ingest, maintenance, pipeline, recommend, similarity, train,
                           views)
from hybridrec.errors import UserError
from hybridrec.jobs.common import job_parser, parse_config, run_main
from hybridrec.runtime.session import build_session, for_one_query

JOBS: dict[str, Callable[[list[str] | None], int]] = {
    "pipeline": pipeline.main, "ingest": ingest.main, "embed": embed.main, "train": train.main,
    "similarity": similarity.main, "recommend": recommend.main, "evaluate": evaluate.main,
    "demo": demo.main, "crawl": crawl.main, "views": views.main, "maintenance": maintenance.main,
}


SQL_FORMATS = ("table", "csv", "json")


def _jsonable(value: object) -> object:
    """A pandas cell as JSON: NaN and infinities as null, arrays as lists, numpy scalars as numbers."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(df: DataFrame, fmt: str, limit: int | None, out: TextIO) -> int:
    """``df`` as an aligned table, CSV with a header, or JSON lines (one object a row) on ``out``;
    at most ``limit`` rows (all when None). Returns the rows written."""
    rows = df.limit(limit) if limit is not None else df
    frame: Any = rows.toPandas()
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "json":
        for record in frame.to_dict(orient="records"):
            out.write(json.dumps({k: _jsonable(v) for k, v in record.items()}, default=str) + "\n")
    else:
        out.write((frame.to_string(index=False, max_colwidth=60) if len(frame) else "(no rows)") + "\n")
    return len(frame)


def sql_main(argv: list[str]) -> int:
    def body() -> int:
        parser = job_parser("Run one SQL statement against the hybridrec tables and print the result.")
        parser.add_argument("query")
        parser.add_argument("--format", choices=SQL_FORMATS, default="table",
                            help="table (aligned, for a terminal), csv (with a header) or json (one object a line)")
        parser.add_argument("--output", default=None, metavar="FILE", help="write there instead of stdout")
        parser.add_argument("--limit", type=int, default=None,
                            help="at most this many rows (default: 50 for table, all for csv and json)")
        args, cfg = parse_config(parser, argv)
        limit = args.limit if args.limit is not None else (50 if args.format == "table" else None)
        if args.output and not Path(args.output).resolve().parent.is_dir():
            raise UserError(f"folder of --output not found: {Path(args.output).parent}")
        spark = build_session(for_one_query(cfg))
        spark.sql(f"USE {cfg.storage.qualified_database}")
        try:
            df = spark.sql(args.query)
        except Exception as exc:  # noqa: BLE001 - Spark's analysis errors: one line, not a Py4J trace
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"query failed: {first}") from None
        if args.output:
            with open(args.output, "w", newline="") as f:
                n = write_result(df, args.format, limit, f)
            print(f"{n} rows -> {args.output}", file=sys.stderr)
        else:
            write_result(df, args.format, limit, sys.stdout)
        return 0

    return run_main(body)


def jars_main(argv: list[str]) -> int:
    """Print the local paths of Delta's jars (and their dependencies), comma-separated: what
    ``spark-submit --jars`` takes. Resolved by Spark's Ivy on first use, its report in a log file."""
    from hybridrec.runtime.jars import resolved_jars
    from hybridrec.runtime.session import delta_maven_coordinates

    def body() -> int:
        job_parser("Print Delta's jars for spark-submit --jars.").parse_args(argv)
        print(",".join(resolved_jars(delta_maven_coordinates(), {})))
        return 0

    return run_main(body)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[list[str]], int]] = {**JOBS, "sql": sql_main, "jars": jars_main}
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        print(f"hybridrec: error: unknown command {argv[0]!r}" if argv else "hybridrec: error: no command given",
              file=sys.stderr)
        raise SystemExit(2)  # raised, not returned: see hybridrec.jobs.common.run_main
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
