import pytest


@pytest.fixture(scope="session")
def dvc_cache(tmp_path_factory):
    """One DVC cache for the session's tiny projects: the full pipeline runs for real once
    (the crash test, which never reads the run cache), and the next project with the same
    code, params and data restores those stages from DVC's run cache (~80 s saved on 2 cores)."""
    return tmp_path_factory.mktemp("dvc-cache")
