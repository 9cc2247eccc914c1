"""``python -m forgetbox``: the command line (also ``torchrun ... -m forgetbox``)."""

from .cli import main

raise SystemExit(main())
