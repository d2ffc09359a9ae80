"""Run every benchmark module bench/bench_*.py (or those named on the command line):

    python -m bench            # all (what `make bench` runs)
    python -m bench import     # only bench/bench_import.py

Each runs against a throwaway test database, writes bench/results/<name>.json and prints
one line; the summary table in bench/README.md is refreshed at the end.
"""

import importlib
import pkgutil
import sys

from bench import _support


def main(argv: list[str]) -> int:
    import bench

    names = sorted(
        module.name.removeprefix("bench_")
        for module in pkgutil.iter_modules(bench.__path__)
        if module.name.startswith("bench_")
    )
    wanted = argv or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(names)}")
        return 2
    _support.django_setup()
    with _support.test_database():
        for name in wanted:
            module = importlib.import_module(f"bench.bench_{name}")
            result = module.run()
            path = _support.write_result(result)
            print(f"{result['line']}  [{path.relative_to(_support.BENCH_DIR.parent)}]")
    _support.update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
