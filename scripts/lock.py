"""Record the components' code in attractor_bench/components.lock.json, or check it.

    python scripts/lock.py            # record bumped, new and removed components
    python scripts/lock.py --check    # say what differs from the lock (exit 1 if anything)

A component whose code changed while its version stayed is refused here: bump its version if its
numbers change, or show that they do not with `python scripts/same_numbers.py --old COMMIT --record`
(docs/architecture.md, "Components and versions").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say what differs from the lock")
    a = ap.parse_args(argv)
    from attractor_bench import components, lock

    now, locked = components.lock_state(), lock.read()
    if a.check:
        problems = lock.problems(locked, now)
        print("\n".join(problems) or f"the lock agrees with the code ({len(now)} components)")
        return 1 if problems else 0
    try:
        updated = lock.write(now, locked)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("updated: " + (", ".join(updated) or "nothing"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
