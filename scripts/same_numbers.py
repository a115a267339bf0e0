"""Check that the current code computes the same numbers as an earlier commit, and record it.

    python scripts/same_numbers.py --old COMMIT [--data-root ../shared/datasets] [--record]

A change to the code of a component (attractor_bench/components.py) that keeps its version fails
the lock test (tests/test_components.py) until it is either bumped (its numbers change: they go
stale) or shown to compute the same numbers. This script shows it by running, not by argument.
COMMIT's tree
(`git archive`) and the working tree are each installed into their own folder (pip --target,
no dependencies: the same libraries serve both) and each, in its own processes with an empty
model and cell cache, runs

- `attractor-bench run suites/same_numbers.yaml`: every model kind (the three attractor presets,
  with both stopping rules, `attractor_at`, the MLP, PGD-AT, the stochastic MLP, the CNN, both
  trained purifiers), every attack of the registry, every target and both attack losses, on a few
  images with small budgets (but HopSkipJump and Boundary, which ART starts from an unseeded
  random state, so that no two runs agree: the suite says so, and a changed component of theirs is
  refused);
- `attractor-bench ood suites/ood_micro.yaml`: every OOD score attack, both directions, the K+1
  cross-check.

It prints, side by side, the components whose code changed, the SHA-256 of each table
(results.csv, ood.csv) and of each model's trained weights, and each version's wall time; exit 0
only if every one is identical. With --record (and only then) it records the check:

- in attractor_bench/components.lock.json, for each component whose code changed at the same
  version (the lock then holds its new hash with this check beside it);
- for an old commit from before component versions (its runs carry a code fingerprint), as the
  link {code: {from, to}, ood: {from, to}} in results/CARRIED_OVER.json, which carries the old
  code's committed runs over to the current component versions.

Both versions read the suite files of the working tree: keep those to keys the old version knows.
What it cannot see: a change that alters numbers only at sizes the small suites do not reach
(say, only after more epochs than they train). Read the diff for that; the check covers the rest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUITE, OOD_SUITE = REPO / "suites" / "same_numbers.yaml", REPO / "suites" / "ood_micro.yaml"
# (a side from before component versions has no components.py: it records code fingerprints)
VERSIONS = ("import json, pathlib, attractor_bench\nif (pathlib.Path(attractor_bench.__file__).parent / 'components.py').is_file():\n"
            " from attractor_bench.components import current\n print(json.dumps({'components': current()}))\n"
            "else:\n from attractor_bench.provenance import code_version, ood_code_version\n"
            " print(json.dumps({'code': code_version(), 'ood': ood_code_version()}))")
UNCHECKED = ("attack.hopskipjump", "attack.boundary")  # not in the suite: ART starts them unseeded
CLI = "from attractor_bench.cli import app; app()"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def install(src: Path, site: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    str(src)], check=True, stdout=subprocess.DEVNULL)


def side(name: str, src: Path, work: Path, data_root: str) -> dict:
    """Install `src` under work/name and run the suites there; what to compare, and the wall time."""
    root = work / name
    site, cache, results = root / "site", root / "cache", root / "results"
    root.mkdir(parents=True, exist_ok=True)
    install(src, site)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}

    def py(*args: str, capture: bool = False) -> str:
        with open(root / "log", "a") as log:  # the runs' own output; shown if one fails
            done = subprocess.run([sys.executable, *args], cwd=root, env=env, text=True, stderr=log,
                                  stdout=subprocess.PIPE if capture else log)
        if done.returncode:
            raise SystemExit(f"{name}: {' '.join(args[2:4]) or args[0]} failed (exit {done.returncode}):\n"
                             + (root / "log").read_text()[-3000:])
        return done.stdout if capture else ""

    found = py("-c", "import attractor_bench; print(attractor_bench.__file__)", capture=True).strip()
    if not found.startswith(str(site)):
        raise SystemExit(f"{name}: imported attractor_bench from {found}, not from {site}")
    t0 = time.perf_counter()
    out = {"versions": json.loads(py("-c", VERSIONS, capture=True))}
    common = ["--data-root", data_root, "--cache-dir", str(cache), "--results-dir", str(results), "--no-download"]
    py("-c", CLI, "run", str(SUITE), *common, "--no-progress")
    py("-c", CLI, "ood", str(OOD_SUITE), *common)
    run = json.loads((results / SUITE.stem / "run.json").read_text())
    out["files"] = {f"{SUITE.stem}/results.csv": sha(results / SUITE.stem / "results.csv"),
                    f"{OOD_SUITE.stem}/ood.csv": sha(results / OOD_SUITE.stem / "ood.csv")}
    out["weights"] = {m: v["weights"] for m, v in run["models"].items()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def compare(old: dict, new: dict) -> tuple[list[tuple[str, object, object]], bool]:
    """The rows printed side by side (label, old, new), and whether every table and weight is the same
    (the fingerprints are shown, not compared: they are what the link joins)."""
    rows = [(f"fingerprint {k}", old["versions"].get(k, "components"), new["versions"].get(k, "components"))
            for k in ("code", "ood")]
    rows += [(f, old["files"][f], new["files"].get(f)) for f in old["files"]]
    rows += [(f"weights {m}", w, new["weights"].get(m)) for m, w in old["weights"].items()]
    rows += [(f"weights {m}", None, w) for m, w in new["weights"].items() if m not in old["weights"]]
    return rows, all(o == n for label, o, n in rows if not label.startswith("fingerprint"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--data-root", default=os.environ.get("ATTRACTOR_BENCH_DATA", "../shared/datasets"))
    ap.add_argument("--record", action="store_true", help="record the check (the lock, CARRIED_OVER.json) if identical")
    ap.add_argument("--keep", type=Path, help="keep the two installs, caches and results here (default: a temporary folder)")
    ap.add_argument("--results-dir", type=Path, default=REPO / "results", help="where CARRIED_OVER.json is (default: results)")
    a = ap.parse_args(argv)
    from attractor_bench import components, lock

    now, locked = components.lock_state(), lock.read()
    changed = sorted(n for n, s in now.items() if n in locked and s["version"] == locked[n]["version"]
                     and s["hash"] != locked[n]["hash"])
    print("components whose code changed at the same version: " + (", ".join(changed) or "none"))
    if set(changed) & set(UNCHECKED):
        print(f"{', '.join(sorted(set(changed) & set(UNCHECKED)))}: not reproducible run to run (ART starts them unseeded); "
              "bump their version instead.")
        return 2
    data_root = str(Path(a.data_root).resolve())
    commit = subprocess.run(["git", "rev-parse", a.old], cwd=REPO, check=True, text=True, capture_output=True).stdout.strip()
    work = a.keep or Path(tempfile.mkdtemp(prefix="same-numbers-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        old_src = work / "old-src"
        old_src.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive, check=True)
        old = side("old", old_src, work, data_root)
        new = side("new", REPO, work, data_root)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    rows, same = compare(old, new)
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'old ' + commit[:10]:34}  new (working tree)")
    for label, o, n in rows:
        mark = "" if label.startswith("fingerprint") else ("  same" if o == n else "  DIFFERENT")
        print(f"{label:{width}}  {str(o):34}  {n}{mark}")
    print(f"{'seconds':{width}}  {old['seconds']:<34}  {new['seconds']}")
    print(f"same_numbers={same} tables={len(old['files'])} models={len(old['weights'])}")
    if not same:
        print("The versions compute different numbers: the committed results stay stale under the new code; "
              "regenerate them (scripts/reproduce.sh).")
        return 1
    if a.record:
        record = {"old_commit": commit, "command": f"python scripts/same_numbers.py --old {commit[:10]}",
                  "date": dt.date.today().isoformat(),
                  "checked": (f"results.csv of suites/{SUITE.name} ({len(old['weights'])} models, every attack but HopSkipJump "
                              f"and Boundary) and ood.csv of suites/{OOD_SUITE.name} identical byte for byte, and every "
                              "model's weights, from empty caches")}
        if "code" in old["versions"]:
            carry(a.results_dir, old["versions"], new["versions"]["components"], record)
        if changed:
            print("Lock updated for: " + ", ".join(lock.write(now, locked, {n: record for n in changed})))
    return 0


def carry(results_dir: Path, old: dict, current: dict, record: dict) -> None:
    """Link the old code's fingerprints to the current component versions in CARRIED_OVER.json
    (started from the earlier CODE_LINEAGE.json's links where it is still there)."""
    from attractor_bench.files import write_text
    from attractor_bench.provenance import CARRIED, VERSIONED, read_carried

    doc, lineage = read_carried(results_dir), results_dir / "CODE_LINEAGE.json"
    if lineage.is_file():
        doc["checks"] = json.loads(lineage.read_text(encoding="utf-8")) + doc["checks"]
        lineage.unlink()
    doc["checks"].append({k: {"from": old[k], "to": VERSIONED} for k in ("code", "ood")} | record)
    doc["components"] = current
    write_text(results_dir / CARRIED, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"Recorded in {results_dir / CARRIED}.")


if __name__ == "__main__":
    raise SystemExit(main())
