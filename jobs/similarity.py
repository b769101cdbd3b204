"""spark-submit entry point for the similarity job: `spark-submit jobs/similarity.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.similarity import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
