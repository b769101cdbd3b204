"""spark-submit entry point for the views job: `spark-submit jobs/views.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.views import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
