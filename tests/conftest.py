import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import tiny_data`

from tiny_data import make_tiny_msmarco  # noqa: E402


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory):
    """A folder with tiny train/validation/test.parquet and collection.parquet (seed 0)."""
    return make_tiny_msmarco(tmp_path_factory.mktemp("raw"))
