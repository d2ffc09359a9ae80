"""What every benchmark needs: Django set up against a throwaway test database (never
the development database), and a place to record results.

A benchmark module `bench/bench_<name>.py` defines `run() -> dict` returning at least
{"name", "figure", "unit", "baseline", "ratio", "line"}; the runner writes the dict to
bench/results/<name>.json (<name>-<vendor>.json on a database other than SQLite), prints
`line` and refreshes the table in bench/README.md.
"""

import json
import os
import platform
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
TABLE_START = "<!-- results:start -->"
TABLE_END = "<!-- results:end -->"


def django_setup() -> None:
    sys.path.insert(0, str(BENCH_DIR.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-insecure-key")
    import django

    django.setup()


@contextmanager
def test_database():
    """A freshly migrated test database, destroyed afterwards.

    SQLite: a file in a temporary directory rather than Django's default in-memory test
    database, so figures include real disk writes as the embedded setup has them.
    PostgreSQL (DATABASE_URL): Django's test database, `test_<name>`.
    """
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment(debug=False)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if connection.vendor == "sqlite":
            connection.settings_dict.setdefault("TEST", {})["NAME"] = str(
                Path(tmp) / "bench.sqlite3"
            )
        old_name = connection.creation.create_test_db(
            verbosity=0, autoclobber=True, serialize=False
        )
        try:
            yield connection
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
            teardown_test_environment()


def result_name(name: str) -> str:
    from django.db import connection

    return name if connection.vendor == "sqlite" else f"{name}-{connection.vendor}"


def write_result(result: dict) -> Path:
    from django.db import connection

    result = {
        **result,
        "name": result_name(result["name"]),
        "database": connection.vendor,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result['name']}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(value: float) -> str:
    # Two decimals below 10: the targets (0.6x, 0.8x) sit there.
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def _table_rows(text: str) -> dict[str, str]:
    """The summary table's rows by benchmark name, as the README holds them."""
    _, _, rest = text.partition(TABLE_START)
    body, _, _ = rest.partition(TABLE_END)
    rows = {}
    for line in body.splitlines()[3:]:  # the marker's line end, header, separator
        if line.startswith("| "):
            rows[line.split("|")[1].strip()] = line
    return rows


def update_readme() -> None:
    """Rewrite the summary table of bench/README.md: a row for every results/*.json,
    and the rows already there for benchmarks not run on this machine (results/ is not
    committed, so a run of one benchmark must not drop the others' last figures)."""
    text = (
        README.read_text(encoding="utf-8") if README.exists() else f"{TABLE_START}\n{TABLE_END}\n"
    )
    by_name = _table_rows(text)
    for path in sorted(RESULTS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        unit = data.get("unit", "")
        by_name[data["name"]] = (
            f"| {data['name']} | {_number(data['figure'])} {unit} | "
            f"{_number(data['baseline'])} {unit} ({data.get('baseline_label', 'baseline')}) | "
            f"{_ratio(data['ratio'])} | {data['database']} | {data['measured_at'][:10]} |"
        )
    rows = [by_name[name] for name in sorted(by_name)]
    table = "\n".join(
        [
            TABLE_START,
            "| name | figure | baseline | ratio | database | measured |",
            "|---|---|---|---|---|---|",
            *rows,
            TABLE_END,
        ]
    )
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    README.write_text(before + table + after, encoding="utf-8")
