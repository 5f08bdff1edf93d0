"""``python -m experiments {compare,reconstruct,train}`` (see docs/experiments.md)."""
from .cli import main

raise SystemExit(main())
