"""Mutation testing of the modules that decide access, masking, identity and audit.

``python bench/mutation.py [MODULE ...]`` (``make mutate [MODULES=…]``) runs
mutmut on each module in turn -- one at a time, so a shared machine keeps its
other core -- and prints the kill rate per module and every mutant that
survived. The modules it may mutate, the tests it runs and the timeouts are
``[tool.mutmut]`` in pyproject.toml; with no MODULE it runs every file that
section's ``only_mutate`` names. docs/mutation.md has the latest results and
why each survivor is left.

Only in-process tests can kill a mutant: mutmut learns which tests call which
function by tracing this process, so a gateway in a subprocess never counts.

mutmut 3 mutates function bodies only. The module-level tables that decide
as much (which masker a kind gets, how treatments rank) get hand-made mutants
in bench/_mutation_tables.py; each runs the test files mutmut found calling
the module, and counts in its module's numbers.

Options:

``--tests PATH …``  run these tests instead of the configured selection (they
                    must pass on the unmutated code, like the whole selection)
``--jobs N``        mutants tested at once (default 2)
``--fail-under P``  exit 1 when a module kills less than P % (default 0)
``--show``          print the diff of every survivor

Each module's mutmut output goes to ``mutants/<module>.log``; ``mutants/`` is
mutmut's working copy of the tree (git-ignored). ``mutmut show NAME`` prints
one mutant, ``mutmut apply NAME`` writes it into the tree to look at (undo
with git).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import _mutation_tables

REPO = Path(__file__).resolve().parent.parent
MUTANTS = REPO / "mutants"
_CHILD = "--mutmut-child"

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), folded
# into what a reader needs: a timeout is a kill (the mutant made a test hang).
_STATUS = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout",
           152: "timeout", 255: "timeout", 37: "killed", 0: "survived", 5: "no tests",
           33: "no tests", 34: "skipped", None: "not run"}  # fmt: skip
_DETECTED = {"killed", "timeout"}


def _settings() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        section: dict[str, object] = tomllib.load(f)["tool"]["mutmut"]
    return section


def _patterns() -> list[str]:
    patterns = _settings().get("only_mutate", [])
    assert isinstance(patterns, list)
    return [str(p) for p in patterns]


def _catalogue() -> list[str]:
    files = {
        str(path.relative_to(REPO))
        for pattern in _patterns()
        for path in REPO.glob(pattern)
        if path.is_file()
    }
    return sorted(files)


def _relative(test: str, parser: argparse.ArgumentParser) -> str:
    path, sep, node = test.partition("::")
    resolved = Path(path).resolve()
    if not resolved.exists() or not resolved.is_relative_to(REPO / "tests"):
        parser.error(f"{test}: not a test file or folder under tests/")
    return str(resolved.relative_to(REPO)) + sep + node


def _dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


@dataclass
class Outcome:
    module: str
    counts: Counter[str]
    survivors: list[str]
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        detected = sum(self.counts[s] for s in _DETECTED)
        return 100.0 * detected / self.total if self.total else 0.0


def _read(module: str) -> Outcome:
    meta = MUTANTS / f"{module}.meta"
    if not meta.is_file():
        return Outcome(module, Counter(), [], "mutmut made no mutants of it")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    prefix = _dotted(module) + "."
    counts: Counter[str] = Counter()
    survivors = []
    for name, code in sorted(codes.items()):
        if not name.startswith(prefix):
            continue
        status = _STATUS.get(code, "suspicious")
        counts[status] += 1
        if status not in _DETECTED:
            survivors.append(f"{name}  ({status})")
    return Outcome(module, counts, survivors)


def _run_one(module: str, tests: list[str], jobs: int) -> Outcome:
    log = MUTANTS / f"{module}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    copy = MUTANTS / module
    if copy.exists() and not (MUTANTS / f"{module}.meta").exists():
        # Copied before the module was in only_mutate: mutmut would keep the
        # plain copy (its source is unchanged) and find no mutants in it.
        copy.unlink()
    command = [sys.executable, __file__, _CHILD, str(jobs), f"{_dotted(module)}.*", *tests]
    with log.open("w") as out:
        code = subprocess.call(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        return Outcome(
            module, Counter(), [], f"mutmut exited {code}; see {log}:\n" + "\n".join(tail)
        )
    return _read(module)


def _covering_files(module: str) -> list[str]:
    """The test files mutmut saw calling a function of ``module``."""
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text())
    prefix = _dotted(module) + "."
    return sorted(
        {
            test.split("::")[0]
            for function, tests in stats["tests_by_mangled_function_name"].items()
            if function.startswith(prefix)
            for test in tests
        }
    )


def _run_tables(outcome: Outcome) -> None:
    """The module's table mutants: killed when a test fails with the table patched."""
    mutants = _mutation_tables.MUTANTS.get(outcome.module, {})
    files = _covering_files(outcome.module) if mutants else []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    for name in mutants:
        if not files:  # pytest would run every test under tests/, servers and all
            outcome.counts["no tests"] += 1
            outcome.survivors.append(f"table mutant: {name}  (no tests)")
            continue
        env[_mutation_tables.ENV] = f"{outcome.module}::{name}"
        code = subprocess.call(
            [*pytest, "-p", "_mutation_tables", *files],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        status = {1: "killed", 0: "survived"}.get(code, "suspicious")
        outcome.counts[status] += 1
        if status != "killed":
            outcome.survivors.append(f"table mutant: {name}  ({status})")


def _report(outcomes: list[Outcome], show: bool) -> None:
    print()
    print(f"{'module':<36} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
          f"{'no tests':>8} {'other':>5} {'kill rate':>9}")  # fmt: skip
    for o in outcomes:
        if o.error:
            print(f"{o.module:<36} ERROR")
            continue
        c = o.counts
        other = o.total - c["killed"] - c["timeout"] - c["survived"] - c["no tests"]
        print(f"{o.module:<36} {o.total:>7} {c['killed']:>6} {c['timeout']:>7} "
              f"{c['survived']:>8} {c['no tests']:>8} {other:>5} {o.rate:>8.1f}%")  # fmt: skip
    for o in outcomes:
        if o.error:
            print(f"\n{o.module}: {o.error}")
        elif o.survivors:
            print(f"\n{o.module}: {len(o.survivors)} not killed")
            for name in o.survivors:
                print(f"  {name}")
                if show and not name.startswith("table mutant:"):
                    mutant = name.split()[0]
                    diff = subprocess.run(
                        [str(Path(sys.executable).parent / "mutmut"), "show", mutant],
                        cwd=REPO, capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    print("    " + diff.stdout.strip().replace("\n", "\n    "))


def _child(argv: list[str]) -> int:
    """One module's mutmut run, with the test selection overridden when asked."""
    jobs, pattern, *tests = argv
    from mutmut.configuration import config

    if tests:
        config().pytest_add_cli_args_test_selection = tests
    from mutmut.__main__ import cli

    return int(cli(["run", "--max-children", jobs, pattern], standalone_mode=False) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_CHILD]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="source files, e.g. gateway/policy.py")
    parser.add_argument("--tests", nargs="+", default=[], metavar="PATH")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PCT")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args(argv)
    catalogue = _catalogue()
    modules = args.modules or catalogue
    for module in modules:
        if not (REPO / module).is_file():
            parser.error(f"{module}: no such file (give paths like gateway/policy.py)")
        if not any(fnmatch.fnmatch(module, p) for p in _patterns()):
            parser.error(f"{module} is not in [tool.mutmut] only_mutate in pyproject.toml")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    # mutmut runs the tests inside mutants/, where the same relative paths exist.
    tests = [_relative(test, parser) for test in args.tests]
    # Which tests call which function is learnt once per invocation: tests
    # edited since the last run may call functions they did not call then.
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    outcomes = []
    for module in modules:
        print(f"mutating {module} …", flush=True)
        outcome = _run_one(module, tests, args.jobs)
        if outcome.error is None:
            _run_tables(outcome)
        outcomes.append(outcome)
    _report(outcomes, args.show)
    failed = [o.module for o in outcomes if o.error or o.rate < args.fail_under]
    if failed:
        print(f"\nbelow {args.fail_under:g} % or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
