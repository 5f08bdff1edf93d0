"""``python -m experiments {compare,reconstruct,train,sweep}`` (see README.md (section "Experiments"))."""
from .cli import main

if __name__ == "__main__":  # not when a worker process of `sweep` imports this module
    raise SystemExit(main())
