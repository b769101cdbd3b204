"""spark-submit entry point for the maintenance job: `spark-submit jobs/maintenance.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.maintenance import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
