"""spark-submit entry point for the evaluate job: `spark-submit jobs/evaluate.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
