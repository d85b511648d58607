"""`dvc pull` of the default raw data, with a short way out when the remote is unreachable.

Used by `make repro` (required) and `make test` (optional: the real-data tests skip instead).
"""

import argparse
import subprocess
import sys
from pathlib import Path

HOW_TO_GET_DATA = """\
could not pull the default data (data/raw) from the DVC remote 'shared' (../shared/dvc-remote).
Get MS MARCO yourself instead: download the Hugging Face `microsoft/ms_marco` v1.1 (or v2.1)
parquet files ({split}-00000-of-0000N.parquet for train, validation and test) into a folder,
then point the pipeline at it:   dvc exp run -S data.raw_dir=/path/to/that/folder
(or set data.raw_dir in params.yaml and run `dvc repro`)."""


def pull(dvc: str, target: str = "data/raw.dvc") -> bool:
    result = subprocess.run([dvc, "pull", "--quiet", target], capture_output=True, text=True)
    return result.returncode == 0 and Path(target).with_suffix("").is_dir()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--optional", action="store_true", help="warn instead of failing")
    args = parser.parse_args(argv)
    dvc = str(Path(sys.executable).with_name("dvc"))
    if pull(dvc):
        return 0
    print(("note: " if args.optional else "error: ") + HOW_TO_GET_DATA, file=sys.stderr)
    if args.optional:
        print("note: tests that need the real data will be skipped.", file=sys.stderr)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
