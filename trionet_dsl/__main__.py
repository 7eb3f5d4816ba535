"""``python -m trionet_dsl ...``: the same command as ``trionet ...``."""

from trionet_dsl.app.cli import app

if __name__ == "__main__":
    app(prog_name="trionet")
