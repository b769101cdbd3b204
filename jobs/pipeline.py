"""spark-submit entry point for the pipeline job: `spark-submit jobs/pipeline.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.pipeline import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
