"""Entry point for `python -m keras_lowrank`."""

import sys

from keras_lowrank.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
