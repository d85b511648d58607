"""DVC stage scripts. Run them as modules (`python -m stages.tokenize`): run as plain
scripts, stages/tokenize.py would shadow the standard library's `tokenize`."""
