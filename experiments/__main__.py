"""``python -m experiments {compare,reconstruct,train}`` (see README.md (section "Experiments"))."""
from .cli import main

raise SystemExit(main())
