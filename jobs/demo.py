"""spark-submit entry point for the demo job: `spark-submit jobs/demo.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.demo import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
