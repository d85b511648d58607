"""Install packages into the running interpreter's environment with uv, or with pip if uv fails.

Why: `make setup` is part of the fresh-clone `make repro` budget (10 minutes on 2 cores), and
pip took 101-122 s to install the project's ~120 wheels where uv takes ~25 s, bytecode
compiled included (benchmarks/README.md, *End to end*). uv does not read pip's configuration, so the settings
pip would install with (its config files and PIP_* variables, as `pip config list` shows
them: index, extra indexes, find-links, constraints, trusted hosts, certificate) are passed
to uv as options; anything uv cannot do falls back to the pip install it replaces.

    python tools/uv_install.py -e '.[test]'      (run with the virtual environment's python)
"""

import ast
import os
import subprocess
import sys

UV = "uv==0.13.9"
SCOPES = (":env:", "install", "global")  # pip's precedence for `pip install`: variables, [install], [global]
TRUE = ("1", "true", "yes", "on")


def pip_settings(python: str) -> dict[str, str]:
    """Each pip setting's value as `pip install` would take it."""
    listed = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=True).stdout
    found: dict[str, dict[str, str]] = {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        scope, _, name = key.rpartition(".")
        if sep and scope in SCOPES:
            found.setdefault(name, {})[scope] = ast.literal_eval(value)
    return {name: next(values[scope] for scope in SCOPES if scope in values) for name, values in found.items()}


def uv_options(settings: dict[str, str]) -> list[str]:
    """uv pip install's options for pip's `settings`; several indexes are searched as pip does
    (every index for the best version: uv's `unsafe-best-match`)."""
    options = ["--index-strategy", "unsafe-best-match"]
    if settings.get("index-url"):
        options += ["--index-url", settings["index-url"]]
    for name, option in (("extra-index-url", "--extra-index-url"), ("find-links", "--find-links"),
                         ("constraint", "--constraint"), ("trusted-host", "--allow-insecure-host")):
        for value in settings.get(name, "").split():
            options += [option, value]
    if settings.get("no-index", "").lower() in TRUE:
        options.append("--no-index")
    return options


def main(targets: list[str]) -> int:
    python = sys.executable
    try:
        settings = pip_settings(python)
        env = {**os.environ, **({"SSL_CERT_FILE": settings["cert"]} if settings.get("cert") else {})}
        subprocess.run([python, "-m", "pip", "install", "--quiet", UV], check=True)
        # compiled at install, as pip does: without .pyc files (and with PYTHONDONTWRITEBYTECODE
        # set, as on the CI machines) every process compiles what it imports, ~11 s more per
        # import of the teacher's packages
        subprocess.run([python, "-m", "uv", "pip", "install", "--quiet", "--compile-bytecode", "--python", python,
                        *uv_options(settings), *targets], check=True, env=env)
        return 0
    except (subprocess.CalledProcessError, OSError, ValueError, SyntaxError) as exc:
        print(f"uv_install: uv did not install ({exc}); installing with pip instead", file=sys.stderr)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    return subprocess.run([python, "-m", "pip", "install", "--quiet", *targets]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
