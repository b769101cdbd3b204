"""spark-submit entry point for the recommend job: `spark-submit jobs/recommend.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.recommend import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
