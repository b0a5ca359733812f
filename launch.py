"""Hydra entry point: one run = one seed of one configuration. See README.md.

    python launch.py                      # CPU default (tiny model, embedded corpus)
    python launch.py +preset=smoke        # the whole pipeline in ~10 s
    python launch.py -m +sweeps=seeds     # a sweep from sweeps/

Installed (`pip install .`), the same command is `crownq-run [overrides]` (crownq/entry.py).
"""

from crownq.entry import main

if __name__ == "__main__":
    main()
