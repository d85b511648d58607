"""tools/uv_install.py hands uv the settings pip would install with."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("uv_install", Path(__file__).parents[1] / "tools" / "uv_install.py")
uv_install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uv_install)


def test_each_pip_setting_becomes_its_uv_option():
    options = uv_install.uv_options({
        "index-url": "https://mirror/simple",
        "extra-index-url": "file:///a/simple  file:///b/simple",
        "find-links": "/opt/wheels",
        "constraint": "/etc/c.txt",
        "trusted-host": "mirror",
        "no-index": "true",
        "default-timeout": "180",  # nothing of uv's: left out
    })
    assert options == ["--index-strategy", "unsafe-best-match", "--index-url", "https://mirror/simple",
                       "--extra-index-url", "file:///a/simple", "--extra-index-url", "file:///b/simple",
                       "--find-links", "/opt/wheels", "--constraint", "/etc/c.txt",
                       "--allow-insecure-host", "mirror", "--no-index"]
    assert uv_install.uv_options({"no-index": "0"}) == ["--index-strategy", "unsafe-best-match"]


def test_pip_settings_take_variables_over_install_over_global(tmp_path, monkeypatch):
    """The file named by PIP_CONFIG_FILE is read after the machine's own, so its values win
    there; a PIP_* variable wins over every file, and [install] over [global]."""
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://global/simple\nfind-links = /global/wheels\n"
                      "constraint = /global/c.txt\n"
                      "[install]\nindex-url = https://install/simple\n")
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", "/env/wheels")
    settings = uv_install.pip_settings(sys.executable)
    assert settings["index-url"] == "https://install/simple"
    assert settings["find-links"] == "/env/wheels"
    assert settings["constraint"] == "/global/c.txt"


def test_a_python_that_cannot_run_pip_raises_what_main_falls_back_on(tmp_path):
    with pytest.raises(OSError):
        uv_install.pip_settings(str(tmp_path / "no-python"))
    with pytest.raises(subprocess.CalledProcessError):
        uv_install.pip_settings("false")
