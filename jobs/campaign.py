"""Ray job entrypoint for a campaign:

    ray job submit --working-dir . -- python jobs/campaign.py --config jobs/configs/embedded.yaml

Takes the same flags as `aar run`; connects to the cluster through RAY_ADDRESS, which
`ray job submit` sets for the job.
"""
import sys
from pathlib import Path

# the job's working directory holds the package even where it is not pip-installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aar_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
