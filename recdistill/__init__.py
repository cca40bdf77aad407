"""The `recdistill` command line, outside both wings (see recdistill/cli.py)."""
