"""spark-submit entry point for the ingest job: `spark-submit jobs/ingest.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.ingest import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
