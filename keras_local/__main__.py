import sys

from keras_local.cli import main

sys.exit(main())
