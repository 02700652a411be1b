"""Run netdsl from a checkout without installing it: `python cli.py build specs/unet.net`."""

from netdsl.cli import run

if __name__ == "__main__":
    run()
