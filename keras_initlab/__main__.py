"""``python -m keras_initlab`` runs the ``initlab`` command."""

import sys

from keras_initlab.cli import main

sys.exit(main())
