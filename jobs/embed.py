"""spark-submit entry point for the embed job: `spark-submit jobs/embed.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.embed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
