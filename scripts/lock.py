"""Record the components' code in attractor_bench/components.lock.json, or check it.

    python scripts/lock.py            # record bumped, new and removed components
    python scripts/lock.py --check    # say what differs from the lock (exit 1 if anything)
    python scripts/lock.py --moved attractor_bench.defences=attractor_bench.defenses
                                      # record components whose code only moved with a module

A component whose code changed while its version stayed is refused here: bump its version if its
numbers change, or show that they do not with `python scripts/same_numbers.py --old COMMIT --record`
(docs/architecture.md, "Components and versions"). `--moved OLD=NEW` accepts such a component only
when its code, with module NEW (and what is under it) named OLD again, hashes to the lock's hash: a
pure move, which computes what the old code computed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say what differs from the lock")
    ap.add_argument("--moved", action="append", default=[], metavar="OLD=NEW",
                    help="a module renamed from OLD to NEW (dotted names); repeatable")
    a = ap.parse_args(argv)
    from attractor_bench import components, lock

    moves = dict(m.split("=", 1) for m in a.moved if "=" in m)
    if len(moves) != len(a.moved):
        print("error: --moved takes OLD=NEW, two dotted module names", file=sys.stderr)
        return 2
    now, locked = components.lock_state(), lock.read()
    if a.check:
        problems = lock.problems(locked, now)
        print("\n".join(problems) or f"the lock agrees with the code ({len(now)} components)")
        return 1 if problems else 0
    try:
        checked = lock.moved(components.registry(), locked, moves) if moves else {}
        for n, record in checked.items():
            print(f"{n}: its code is the lock's code with {', '.join(f'{m} named {o}' for o, m in moves.items())}: recorded as moved")
        updated = lock.write(now, locked, checked)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("updated: " + (", ".join(updated) or "nothing"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
