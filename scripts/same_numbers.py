"""Check that the current code computes the same numbers as an earlier commit, and record it.

    python scripts/same_numbers.py --old COMMIT [--data-root ../shared/datasets] [--record]

A change to code that computes numbers changes `code_version()` and so marks every committed
result stale (attractor_bench/provenance.py), even where it changes no number: an option whose
default is the old behaviour. This script settles it by running, not by argument. COMMIT's tree
(`git archive`) and the working tree are each installed into their own folder (pip --target,
no dependencies: the same libraries serve both) and each, in its own processes with an empty
model and cell cache, runs

- `attractor-bench run suites/same_numbers.yaml`: every model kind (the three attractor presets,
  the MLP, PGD-AT, the stochastic MLP, the CNN, both trained purifiers), every attack of the
  registry and every target, on a few images with small budgets (but HopSkipJump and Boundary,
  which ART starts from an unseeded random state, so that no two runs agree: the suite says so);
- `attractor-bench ood suites/ood_micro.yaml`: every OOD score attack, both directions, the K+1
  cross-check.

It prints, side by side, both versions' fingerprints, the SHA-256 of each table (results.csv,
ood.csv) and of each model's trained weights, and each version's wall time; exit 0 only if every
one is identical. With --record (and only then) it appends the link {code: {from, to}, ood:
{from, to}} with this command, the date and what was compared to results/CODE_LINEAGE.json,
which lets the leaderboard count the old code's committed runs as the current code's.

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
VERSIONS = ("import json; from attractor_bench.provenance import code_version, ood_code_version; "
            "print(json.dumps({'code': code_version(), 'ood': ood_code_version()}))")
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
    rows = [(f"fingerprint {k}", old["versions"][k], new["versions"][k]) for k in ("code", "ood")]
    rows += [(f, old["files"][f], new["files"].get(f)) for f in old["files"]]
    rows += [(f"weights {m}", w, new["weights"].get(m)) for m, w in old["weights"].items()]
    rows += [(f"weights {m}", None, w) for m, w in new["weights"].items() if m not in old["weights"]]
    return rows, all(o == n for label, o, n in rows if not label.startswith("fingerprint"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--data-root", default=os.environ.get("ATTRACTOR_BENCH_DATA", "../shared/datasets"))
    ap.add_argument("--record", action="store_true", help=f"append the link to results/CODE_LINEAGE.json if identical")
    ap.add_argument("--keep", type=Path, help="keep the two installs, caches and results here (default: a temporary folder)")
    ap.add_argument("--results-dir", type=Path, default=REPO / "results", help="where CODE_LINEAGE.json is (default: results)")
    a = ap.parse_args(argv)
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
        if old["versions"] == new["versions"]:
            print("Same fingerprints: nothing to record.")
            return 0
        sys.path.insert(0, str(REPO))
        from attractor_bench.files import write_text
        from attractor_bench.provenance import LINEAGE, read_lineage
        links = read_lineage(a.results_dir)
        links.append({k: {"from": old["versions"][k], "to": new["versions"][k]} for k in ("code", "ood")} | {
            "old_commit": commit, "command": f"python scripts/same_numbers.py --old {commit[:10]}",
            "date": dt.date.today().isoformat(),
            "checked": (f"results.csv of suites/{SUITE.name} ({len(old['weights'])} models, every attack but HopSkipJump and Boundary) and ood.csv of "
                        f"suites/{OOD_SUITE.name} identical byte for byte, and every model's weights, from empty caches")})
        write_text(a.results_dir / LINEAGE, json.dumps(links, indent=2) + "\n")
        print(f"Recorded in {a.results_dir / LINEAGE}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
