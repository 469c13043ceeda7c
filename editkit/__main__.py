"""``python -m editkit`` (also the torchrun entry: ``torchrun ... -m editkit stats ...``)."""

import sys

from editkit.cli.main import main

sys.exit(main())
