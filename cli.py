"""Run netdsl from a checkout without installing it: `python cli.py build specs/unet.net`."""
import sys

from netdsl.cli import main

if __name__ == "__main__":
    sys.exit(main())
