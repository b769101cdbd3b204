"""spark-submit / python entry point for the crawl job: `python jobs/crawl.py --conf conf/cluster.yaml`."""
import sys

from hybridrec.jobs.crawl import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
