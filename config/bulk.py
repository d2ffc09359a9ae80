"""Inserting tens of thousands of rows without building a model instance for each.

For the bulk imports (cases.imports, exams.scoring.scores_import) and the audit rows they
record: there Django's bulk_create spends most of its time preparing each value of each
object in Python (bench/README.md, "import"). `insert_rows` prepares each column once per
distinct value and sends the rows with COPY on PostgreSQL, executemany elsewhere.

It is a plain INSERT: no save(), no signals, no full_clean and no returned primary keys.
Callers validate first, insert inside their own transaction, and read primary keys back
when they need them (by a natural key, or as the rows above the largest key before the
insert). Database constraints still apply; their violations
raise django.db.IntegrityError as with the ORM.
"""

from collections.abc import Collection, Iterable, Sequence

from django.db import connections, models, router
from django.utils import timezone

# Rows handed to executemany at a time: bounds the prepared copy held in memory.
_BATCH = 5000

# Internal types whose get_db_prep_save returns the Python value unchanged for the str,
# int and bool values callers pass: those columns go to the driver as they are.
_AS_IS = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "ForeignKey",
    "IntegerField",
    "PositiveBigIntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
    "TextField",
}


def _preparer(field: models.Field, connection):
    """The field's own get_db_prep_save, remembered per distinct value (a file repeats a
    few dates and scores thousands of times); None when the value goes as it is."""
    if field.get_internal_type() in _AS_IS:
        return None
    prepare = field.get_db_prep_save
    cache: dict = {}

    def prep(value):
        # Keyed with the type: 1 == 1.0 == True, but each may prepare differently.
        try:
            key = (value.__class__, value)
            return cache[key]
        except KeyError:
            cache[key] = prepared = prepare(value, connection)
            return prepared
        except TypeError:  # unhashable (a dict for a JSON column)
            return prepare(value, connection)

    return prep


def _defaults(model: type[models.Model], given: list[models.Field]):
    """The concrete columns the caller did not give, with what Model() and save() would
    put there: now for auto_now/auto_now_add timestamps, the field default otherwise."""
    now = timezone.now()
    fields, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field in given or field.generated:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            # DateField.pre_save takes the server's local date, as here.
            value = now if isinstance(field, models.DateTimeField) else timezone.localdate(now)
        else:
            value = field.get_default()
        fields.append(field)
        values.append(value)
    return fields, values


def insert_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Sequence],
    *,
    prepared: Collection[str] = (),
) -> int:
    """Insert `rows` (tuples of values in the order of `fields`, field names or attnames
    such as "candidate_id") into `model`'s table; returns how many were sent.

    Values are what the model's attributes would hold (str, int, date, Decimal, aware
    datetime, dict for JSON); each column is prepared by its field's get_db_prep_save,
    as bulk_create does, except the columns named in `prepared`, whose values are
    already what the database takes (JSON text the caller serialised anyway). Columns
    not named get their default (auto_now fields: now). Runs in the caller's
    transaction."""
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    given = [meta.get_field(name) for name in fields]
    extra, extra_values = _defaults(model, given)
    columns = given + extra
    constant = []
    for field, value in zip(extra, extra_values, strict=True):
        prep = _preparer(field, connection)
        constant.append(value if prep is None else prep(value))
    preparers = [
        (index, prep)
        for index, prep in enumerate(
            None if name in prepared else _preparer(field, connection)
            for name, field in zip(fields, given, strict=True)
        )
        if prep is not None
    ]

    def ready(row: Sequence) -> tuple:
        if preparers:
            row = list(row)
            for index, prep in preparers:
                row[index] = prep(row[index])
        return (*row, *constant)

    quote = connection.ops.quote_name
    # Identifiers come from the model's meta, quoted; values are always parameters.
    table = quote(meta.db_table)
    names = ", ".join(quote(field.column) for field in columns)
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if connection.vendor == "postgresql" and hasattr(raw, "copy"):  # psycopg 3
            statement = f"COPY {table} ({names}) FROM STDIN"
            with connection.wrap_database_errors, raw.copy(statement) as copy:
                for row in rows:
                    copy.write_row(ready(row))
                    count += 1
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            statement = f"INSERT INTO {table} ({names}) VALUES ({placeholders})"  # noqa: S608
            batch: list[tuple] = []
            for row in rows:
                batch.append(ready(row))
                if len(batch) == _BATCH:
                    cursor.executemany(statement, batch)
                    count += len(batch)
                    batch = []
            if batch:
                cursor.executemany(statement, batch)
                count += len(batch)
    return count
