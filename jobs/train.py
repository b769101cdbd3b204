"""spark-submit entry point for the train job: `spark-submit jobs/train.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
