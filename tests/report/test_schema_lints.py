"""The schema section: Django schema lints planted in the embedded PostgreSQL, each
finding's code, object, model/field mapping and fix asserted, and the fixes executed.

tests/reportapp declares Ledger/LedgerEntry, Branch/Teller and AuditEvent as Django
believes they are; the fixture changes their tables behind Django's back, and plants the
same problems with hostile names (quotes, spaces, semicolons, upper case, unicode) in
another schema, for tables no model declares.
"""

from __future__ import annotations

import ast

import pytest
from django.db import connections, migrations, models
from django.db.migrations.loader import MigrationLoader
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from django_dbtuning.report import SECTIONS
from django_dbtuning.report.schema_facts import value_shares
from tests.report.test_report import (
    admin_connection,
    dbreport,
    extra_alias,
    findings,
    report_json,
)

pytestmark = pytest.mark.django_db

SCHEMA = "Other Schema"
PARENT = 'Parent "K"; Ünï'
CHILD = "Child; DROP TABLE x"
REF = 'Ref "Id"'
FLAG = "Flag Ü"
FK_A = 'Fk "A"; DROP TABLE x'
FK_B = "fk b; DROP TABLE x"
FLAG_INDEX = 'Flag "Idx"; DROP TABLE x'
NO_PK = 'NoPk "T"; DROP TABLE x'
NO_PK_UNIQUE = 'NoPk Unique "U"'
UNIQUE_INDEX = 'Uniq "Code"; x'


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


PLANT = [
    "INSERT INTO reportapp_ledger (id) VALUES (1), (2)",
    "INSERT INTO reportapp_ledgerentry (ledger_id, settled) "
    "SELECT 1 + g % 2, g % 50 = 0 FROM generate_series(1, 1000) g",
    "ANALYZE reportapp_ledgerentry",
    # The database missed the migration that made ledger_id bigint.
    "ALTER TABLE reportapp_ledgerentry ALTER COLUMN ledger_id TYPE integer",
    'ALTER TABLE reportapp_ledgerentry ADD CONSTRAINT "ledger twice" '
    "FOREIGN KEY (ledger_id) REFERENCES reportapp_ledger (id)",
    # The key became bigint outside Django: the model lags.
    "ALTER TABLE reportapp_branch ALTER COLUMN id TYPE bigint",
    "ALTER TABLE reportapp_auditevent DROP CONSTRAINT reportapp_auditevent_pkey",
]

UNPLANT = [
    'ALTER TABLE reportapp_ledgerentry DROP CONSTRAINT IF EXISTS "ledger twice"',
    "ALTER TABLE reportapp_ledgerentry ALTER COLUMN ledger_id TYPE bigint",
    "ALTER TABLE reportapp_branch ALTER COLUMN id TYPE integer",
    "ALTER TABLE reportapp_teller ALTER COLUMN branch_id TYPE integer",
    "DROP INDEX IF EXISTS reportapp_auditevent_pkey",
    "ALTER TABLE reportapp_auditevent DROP CONSTRAINT IF EXISTS reportapp_auditevent_pkey",
    "ALTER TABLE reportapp_auditevent ADD PRIMARY KEY (id)",
    "DELETE FROM reportapp_ledgerentry",
    "DELETE FROM reportapp_ledger",
]


def plant_hostile(conn) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(SCHEMA)))
    conn.execute(
        sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(q(SCHEMA, PARENT))
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, {} integer, {} boolean)"
        ).format(q(SCHEMA, CHILD), q(REF), q(FLAG))
    )
    for name in (FK_A, FK_B):
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}"
            ).format(q(SCHEMA, CHILD), q(name), q(REF), q(SCHEMA, PARENT))
        )
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} ({})").format(
            q(FLAG_INDEX), q(SCHEMA, CHILD), q(FLAG)
        )
    )
    conn.execute(sql.SQL("CREATE TABLE {} (note text)").format(q(SCHEMA, NO_PK)))
    conn.execute(
        sql.SQL("CREATE TABLE {} (code int NOT NULL, note text)").format(
            q(SCHEMA, NO_PK_UNIQUE)
        )
    )
    conn.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} (code)").format(
            q(UNIQUE_INDEX), q(SCHEMA, NO_PK_UNIQUE)
        )
    )


@pytest.fixture(scope="module")
def planted_schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS public.x")
        conn.execute("CREATE TABLE public.x (id int)")
        for statement in PLANT:
            conn.execute(statement)
        plant_hostile(conn)
        yield conn
        for statement in UNPLANT:
            conn.execute(statement)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
        conn.execute("DROP TABLE IF EXISTS public.x")


@pytest.fixture
def schema_report(planted_schema):
    return report_json("--database", "default", "--section", "schema")


def by_object(document: dict, code: str) -> dict[str, dict]:
    return {f["object"]: f for f in findings(document, code)}


def run_sql_strings(code: str) -> list:
    """The string arguments of a migrations.RunSQL(...) snippet, read back by ast."""
    call = ast.parse(code, mode="eval").body
    assert isinstance(call, ast.Call)
    assert ast.unparse(call.func) == "migrations.RunSQL"
    return [ast.literal_eval(arg) for arg in call.args] + [
        ast.literal_eval(kw.value) for kw in call.keywords
    ]


def still_there(conn) -> None:
    assert conn.execute("SELECT to_regclass('public.x')").fetchone()[0] is not None


# -- fk_type_mismatch -----------------------------------------------------------------


def test_integer_fk_to_bigint_key_when_the_column_missed_a_migration(schema_report):
    found = by_object(schema_report, "fk_type_mismatch")
    finding = found["reportapp_ledgerentry(ledger_id)"]
    assert finding["severity"] == "warning"
    assert finding["model"] == "reportapp.LedgerEntry"
    assert finding["data"]["field"] == "reportapp.LedgerEntry.ledger"
    assert finding["data"]["column_types"] == ["integer"]
    assert finding["data"]["referenced_types"] == ["bigint"]
    assert finding["data"]["constraint"].endswith("_fk_reportapp_ledger_id")
    alter = 'ALTER TABLE "public"."reportapp_ledgerentry" ALTER COLUMN "ledger_id" TYPE bigint'
    reverse = 'ALTER TABLE "public"."reportapp_ledgerentry" ALTER COLUMN "ledger_id" TYPE integer'
    assert finding["data"]["sql"] == [alter]
    assert (
        finding["data"]["migration"]
        == f"migrations.RunSQL({alter!r}, reverse_sql={reverse!r})"
    )
    assert run_sql_strings(finding["data"]["migration"]) == [alter, reverse]
    hint = finding["hint"]
    assert (
        "reportapp.LedgerEntry.ledger references reportapp.Ledger.id (BigAutoField)"
        in hint
    )
    assert "AlterField would change nothing" in hint
    assert "in a new migration of reportapp" in hint
    assert "ACCESS EXCLUSIVE" in hint
    assert "integer" in finding["title"] and "bigint" in finding["title"]


def test_integer_fk_to_bigint_key_when_the_model_lags(schema_report):
    found = by_object(schema_report, "fk_type_mismatch")
    name = next(n for n in found if n.startswith("reportapp_teller("))
    finding = found[name]
    assert finding["model"] == "reportapp.Teller"
    assert finding["data"]["field"] == "reportapp.Teller.branch"
    operation = (
        "migrations.AlterField(model_name='branch', name='id', "
        "field=models.BigAutoField(primary_key=True, serialize=False))"
    )
    assert finding["data"]["migration"] == operation
    assert "sql" not in finding["data"]
    assert "declares reportapp.Branch.id as AutoField (integer)" in finding["hint"]
    assert operation in finding["hint"]
    assert "ACCESS EXCLUSIVE" in finding["hint"]
    parsed = eval(operation, {"migrations": migrations, "models": models})
    assert isinstance(parsed.field, models.BigAutoField)
    assert (parsed.model_name, parsed.name) == ("branch", "id")


def test_the_alter_field_fixes_it(planted_schema, django_db_blocker):
    """Applying the suggested AlterField (as a migration would) aligns both columns."""
    document = report_json("--database", "default", "--section", "schema")
    finding = next(
        f
        for f in findings(document, "fk_type_mismatch")
        if f["object"].startswith("reportapp_teller(")
    )
    operation = eval(
        finding["data"]["migration"], {"migrations": migrations, "models": models}
    )
    with django_db_blocker.unblock(), extra_alias("migrate") as alias:
        connection = connections[alias]
        state = MigrationLoader(connection).project_state(
            ("reportapp", "0002_schema_lints")
        )
        new_state = state.clone()
        operation.state_forwards("reportapp", new_state)
        with connection.schema_editor() as editor:
            operation.database_forwards("reportapp", editor, state, new_state)
        after = report_json("--database", "default", "--section", "schema")
        with connection.schema_editor() as editor:
            operation.database_backwards("reportapp", editor, new_state, state)
    assert not any(
        f["object"].startswith("reportapp_teller(")
        for f in findings(after, "fk_type_mismatch")
    )
    planted_schema.execute("ALTER TABLE reportapp_branch ALTER COLUMN id TYPE bigint")


def test_hostile_fk_type_fix_alters_exactly_its_column(schema_report, planted_schema):
    found = by_object(schema_report, "fk_type_mismatch")
    hostile = [f for name, f in found.items() if name.startswith('"Other Schema"')]
    assert len(hostile) == 1  # one finding for the column its two constraints share
    finding = hostile[0]
    assert finding["model"] is None and finding["data"]["field"] is None
    alter = (
        'ALTER TABLE "Other Schema"."Child; DROP TABLE x" '
        'ALTER COLUMN "Ref ""Id""" TYPE bigint'
    )
    assert finding["data"]["sql"] == [alter]
    assert run_sql_strings(finding["data"]["migration"])[0] == alter
    planted_schema.execute(alter)
    still_there(planted_schema)
    after = report_json("--database", "default", "--section", "schema")
    assert not any(
        f["object"].startswith('"Other Schema"')
        for f in findings(after, "fk_type_mismatch")
    )
    planted_schema.execute(alter.replace("TYPE bigint", "TYPE integer"))


# -- duplicate_foreign_key ---------------------------------------------------------------


def test_duplicate_foreign_key_keeps_djangos(schema_report):
    found = by_object(schema_report, "duplicate_foreign_key")
    finding = found['reportapp_ledgerentry."ledger twice"']
    assert finding["severity"] == "warning"
    assert finding["model"] == "reportapp.LedgerEntry"
    assert finding["data"]["field"] == "reportapp.LedgerEntry.ledger"
    assert "_fk_reportapp_ledger_id" in finding["data"]["duplicate_of"]
    drop = 'ALTER TABLE "public"."reportapp_ledgerentry" DROP CONSTRAINT "ledger twice"'
    assert finding["data"]["sql"] == [drop]
    forward, reverse = run_sql_strings(finding["data"]["migration"])
    assert forward == drop
    assert reverse.startswith(
        'ALTER TABLE "public"."reportapp_ledgerentry" ADD CONSTRAINT "ledger twice" '
        "FOREIGN KEY (ledger_id) REFERENCES"
    )
    assert (
        "ACCESS EXCLUSIVE lock on reportapp_ledgerentry and reportapp_ledger"
        in (finding["hint"])
    )
    assert "declares only one of them" in finding["detail"]


def test_hostile_duplicate_foreign_key_drop(schema_report, planted_schema):
    found = by_object(schema_report, "duplicate_foreign_key")
    hostile = [f for name, f in found.items() if name.startswith('"Other Schema"')]
    assert len(hostile) == 1
    finding = hostile[0]
    assert finding["data"]["duplicate_of"] == FK_A  # the older one stays
    drop = (
        'ALTER TABLE "Other Schema"."Child; DROP TABLE x" '
        'DROP CONSTRAINT "fk b; DROP TABLE x"'
    )
    assert finding["data"]["sql"] == [drop]
    forward, reverse = run_sql_strings(finding["data"]["migration"])
    planted_schema.execute(forward)
    still_there(planted_schema)
    names = {
        r[0]
        for r in planted_schema.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            ['"Other Schema"."Child; DROP TABLE x"'],
        )
    }
    assert names == {FK_A}
    planted_schema.execute(reverse)  # the reverse puts it back
    assert report_json("--database", "default", "--section", "schema")


# -- missing_primary_key -----------------------------------------------------------------


def test_model_table_without_primary_key(schema_report, planted_schema):
    finding = by_object(schema_report, "missing_primary_key")["reportapp_auditevent"]
    assert finding["severity"] == "warning"
    assert finding["model"] == "reportapp.AuditEvent"
    assert finding["data"]["field"] == "reportapp.AuditEvent.id"
    create = (
        'CREATE UNIQUE INDEX CONCURRENTLY "reportapp_auditevent_pkey" ON '
        '"public"."reportapp_auditevent" ("id")'
    )
    add = (
        'ALTER TABLE "public"."reportapp_auditevent" ADD CONSTRAINT '
        '"reportapp_auditevent_pkey" PRIMARY KEY USING INDEX "reportapp_auditevent_pkey"'
    )
    assert finding["data"]["sql"] == [create, add]
    assert run_sql_strings(finding["data"]["migration"])[0] == [create, add]
    assert "atomic = False" in finding["hint"]
    assert "ACCESS EXCLUSIVE" in finding["hint"]
    for statement in finding["data"]["sql"]:
        planted_schema.execute(statement)
    after = report_json("--database", "default", "--section", "schema")
    assert "reportapp_auditevent" not in by_object(after, "missing_primary_key")
    planted_schema.execute(
        "ALTER TABLE reportapp_auditevent DROP CONSTRAINT reportapp_auditevent_pkey"
    )


def test_hostile_tables_without_primary_key(schema_report, planted_schema):
    found = by_object(schema_report, "missing_primary_key")
    plain = found['"Other Schema"."NoPk ""T""; DROP TABLE x"']
    assert plain["model"] is None
    add = (
        'ALTER TABLE "Other Schema"."NoPk ""T""; DROP TABLE x" ADD COLUMN "id" bigint '
        "GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    assert plain["data"]["sql"] == [add]
    assert "rewrites the table" in plain["hint"]
    unique = found['"Other Schema"."NoPk Unique ""U"""']
    promote = (
        'ALTER TABLE "Other Schema"."NoPk Unique ""U""" ADD CONSTRAINT '
        '"Uniq ""Code""; x" PRIMARY KEY USING INDEX "Uniq ""Code""; x"'
    )
    assert unique["data"]["sql"] == [promote]
    for finding in (plain, unique):
        planted_schema.execute(finding["data"]["sql"][0])
    still_there(planted_schema)
    after = by_object(
        report_json("--database", "default", "--section", "schema"),
        "missing_primary_key",
    )
    assert not any(name.startswith('"Other Schema"') for name in after)


# -- boolean_index -------------------------------------------------------------------------


def test_boolean_index_on_a_model_field(schema_report):
    found = by_object(schema_report, "boolean_index")
    name = next(n for n in found if n.startswith("reportapp_ledgerentry_settled"))
    finding = found[name]
    assert finding["severity"] == "info"
    assert finding["model"] == "reportapp.LedgerEntry"
    assert finding["data"]["field"] == "reportapp.LedgerEntry.settled"
    assert finding["data"]["rare_value"] is True
    assert "2% of its rows are true, 98% false" in finding["detail"]
    assert "set db_index=False on reportapp.LedgerEntry.settled" in finding["hint"]
    assert (
        "models.Index(fields=['settled'], condition=models.Q(settled=True), "
        "name='ledgerentry_settled_t') to reportapp.LedgerEntry.Meta.indexes"
    ) in finding["hint"]


def test_hostile_boolean_index(schema_report, planted_schema):
    finding = by_object(schema_report, "boolean_index")[
        '"Other Schema"."Flag ""Idx""; DROP TABLE x"'
    ]
    assert finding["model"] is None
    drop = (
        'DROP INDEX CONCURRENTLY IF EXISTS "Other Schema"."Flag ""Idx""; DROP TABLE x"'
    )
    assert finding["data"]["sql"] == [drop]
    create = finding["data"]["create_sql"]
    assert create == (
        'CREATE INDEX CONCURRENTLY ON "Other Schema"."Child; DROP TABLE x" ("Flag Ü") '
        'WHERE "Flag Ü"'
    )
    forward, reverse = run_sql_strings(finding["data"]["migration"])
    assert forward == drop
    planted_schema.execute(create)
    planted_schema.execute(forward)
    still_there(planted_schema)
    after = by_object(
        report_json("--database", "default", "--section", "schema"), "boolean_index"
    )
    assert not any(name.startswith('"Other Schema"') for name in after)
    planted_schema.execute(reverse)


# -- the section -----------------------------------------------------------------------------


def test_schema_section_in_json_text_and_help(schema_report):
    assert "schema" in SECTIONS
    section = schema_report["databases"]["default"]["schema"]
    assert section["fk_type_mismatch"] >= 3
    assert section["duplicate_foreign_key"] >= 2
    checks = schema_report["databases"]["default"]["checks"]
    for check in (
        "schema_foreign_keys",
        "tables_without_primary_key",
        "boolean_indexes",
    ):
        assert checks[check]["status"] == "ok"
    out, err, code = dbreport("--database", "default", "--section", "schema")
    assert code == 0, err
    assert "  Schema" in out
    assert "tables without a primary key" in out
    from django_dbtuning.management.commands.dbreport import Command

    assert "schema" in Command().create_parser("manage.py", "dbreport").format_help()


def test_schema_findings_are_not_in_other_sections(planted_schema):
    document = report_json("--database", "default", "--section", "indexes,tables")
    for code in (
        "fk_type_mismatch",
        "duplicate_foreign_key",
        "missing_primary_key",
        "boolean_index",
    ):
        assert not findings(document, code)


# -- integer primary keys running out of range (sequence_near_overflow, tables) ------------

SEQ_TABLE = 'Seq "T"; DROP TABLE x'


@pytest.fixture
def sequences(planted_schema):
    conn = planted_schema
    before = conn.execute("SELECT last_value FROM reportapp_ticket_id_seq").fetchone()[
        0
    ]
    conn.execute(
        sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, n serial)").format(
            q(SCHEMA, SEQ_TABLE)
        )
    )
    seq, other = (
        conn.execute(
            "SELECT pg_get_serial_sequence(%s, %s)",
            [f'"{SCHEMA}"."Seq ""T""; DROP TABLE x"', column],
        ).fetchone()[0]
        for column in ("id", "n")
    )
    conn.execute("SELECT setval(%s, 1900000000)", [seq])  # 88 %: warning
    conn.execute("SELECT setval(%s, 1300000000)", [other])  # 61 %, not a key: nothing
    conn.execute("SELECT setval('reportapp_ticket_id_seq', 1200000000)")  # 56 %: info
    yield conn
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(q(SCHEMA, SEQ_TABLE)))
    conn.execute("SELECT setval('reportapp_ticket_id_seq', %s)", [before])


def test_integer_primary_key_flagged_early_with_its_alter_field(sequences):
    document = report_json("--database", "default", "--section", "tables")
    found = by_object(document, "sequence_near_overflow")
    ticket = found["reportapp_ticket.id"]
    assert ticket["severity"] == "info"
    assert ticket["data"]["primary_key"] is True
    assert ticket["model"] == "reportapp.Ticket"
    assert ticket["data"]["field"] == "reportapp.Ticket.id"
    operation = (
        "migrations.AlterField(model_name='ticket', name='id', "
        "field=models.BigAutoField(primary_key=True, serialize=False))"
    )
    assert ticket["data"]["migration"] == operation
    assert operation in ticket["hint"]
    assert "ACCESS EXCLUSIVE" in ticket["hint"]
    parsed = eval(operation, {"migrations": migrations, "models": models})
    assert isinstance(parsed.field, models.BigAutoField)
    # A plain integer column at 61 % is not a key: not flagged before the warning level.
    assert not any(name.endswith(".n") for name in found)


def test_hostile_serial_key_widened_by_its_sql(sequences):
    document = report_json("--database", "default", "--section", "tables")
    name = '"Other Schema"."Seq ""T""; DROP TABLE x".id'
    finding = by_object(document, "sequence_near_overflow")[name]
    assert finding["severity"] == "warning"
    assert finding["model"] is None
    alter = 'ALTER TABLE "Other Schema"."Seq ""T""; DROP TABLE x" ALTER COLUMN "id" TYPE bigint'
    assert finding["data"]["sql"][0] == alter
    assert finding["data"]["sql"][1].startswith('ALTER SEQUENCE "Other Schema".')
    assert finding["data"]["sql"][1].endswith(" AS bigint")
    statements, reverse = run_sql_strings(finding["data"]["migration"])
    assert statements == finding["data"]["sql"]
    for statement in statements:
        sequences.execute(statement)
    still_there(sequences)
    after = report_json("--database", "default", "--section", "tables")
    assert name not in by_object(after, "sequence_near_overflow")


# -- settings, privileges ----------------------------------------------------------------------


def test_new_thresholds_are_known_and_validated(dbtuning):
    from django.core.checks import run_checks

    names = {
        "freeze_age_info_ratio": 0.5,
        "freeze_age_warning_ratio": 2,
        "table_bloat_warning_bytes": 1024,
        "table_bloat_min_ratio": 0.3,
        "table_bloat_exact_tables": 5,
        "sequence_info_ratio": 0.6,
    }
    dbtuning(REPORT_THRESHOLDS=names)
    assert not [m for m in run_checks(databases=[]) if m.id == "dbtuning.W050"]
    dbtuning(REPORT_THRESHOLDS={"table_bloat_min_ratoi": 0.3})
    flagged = [m for m in run_checks(databases=[]) if m.id == "dbtuning.W050"]
    assert flagged and "table_bloat_min_ratoi" in flagged[0].msg


def test_a_role_without_privileges_still_gets_the_schema_lints(planted_schema):
    """The lints read the catalogs only: a role with no grant at all sees them all (the
    boolean index's value shares need pg_stats, which hides columns it cannot read)."""
    from tests.report.test_report import LIMITED_PASSWORD

    conn = planted_schema
    conn.execute("DROP ROLE IF EXISTS dbreport_schema")
    conn.execute(f"CREATE ROLE dbreport_schema LOGIN PASSWORD '{LIMITED_PASSWORD}'")
    try:
        with extra_alias(
            "schema_role", USER="dbreport_schema", PASSWORD=LIMITED_PASSWORD
        ):
            document = report_json("--database", "schema_role", "--section", "schema")
    finally:
        conn.execute("DROP OWNED BY dbreport_schema")
        conn.execute("DROP ROLE dbreport_schema")
    checks = document["databases"]["schema_role"]["checks"]
    for check in (
        "schema_foreign_keys",
        "tables_without_primary_key",
        "boolean_indexes",
    ):
        assert checks[check]["status"] == "ok"
    assert "reportapp_ledgerentry(ledger_id)" in by_object(document, "fk_type_mismatch")
    assert "reportapp_auditevent" in by_object(document, "missing_primary_key")
    settled = next(
        f
        for f in findings(document, "boolean_index")
        if f["object"].startswith("reportapp_ledgerentry_settled")
    )
    assert "it has no statistics yet" in settled["detail"]


def test_unreachable_database_is_reported_not_raised():
    with extra_alias("gone", HOST="127.0.0.1", PORT="1"):
        out, err, code = dbreport("--database", "gone", "--section", "schema")
    assert code == 2
    assert "gone" in err


def test_partitioned_table_without_primary_key(planted_schema):
    table = q(SCHEMA, 'Parted "P"')
    planted_schema.execute(
        sql.SQL("CREATE TABLE {} (day date, n int) PARTITION BY RANGE (day)").format(
            table
        )
    )
    planted_schema.execute(
        sql.SQL(
            "CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"
        ).format(q(SCHEMA, "parted 2026"), table)
    )
    try:
        document = report_json("--database", "default", "--section", "schema")
    finally:
        planted_schema.execute(sql.SQL("DROP TABLE {}").format(table))
    found = by_object(document, "missing_primary_key")
    parent = found['"Other Schema"."Parted ""P"""']
    assert "includes the partition key" in parent["hint"]
    assert "sql" not in parent["data"]
    # The partition is the parent's business: reported once, on the parent.
    assert '"Other Schema"."parted 2026"' not in found


def test_fk_of_an_installed_app_is_fixed_from_your_own_migration(planted_schema):
    """auth.User's key made bigint by hand: the many-to-many table Django ships keeps an
    integer column, and its model cannot change, so the fix is your own RunSQL."""
    planted_schema.execute("ALTER TABLE auth_user ALTER COLUMN id TYPE bigint")
    try:
        document = report_json("--database", "default", "--section", "schema")
    finally:
        planted_schema.execute("ALTER TABLE auth_user ALTER COLUMN id TYPE integer")
    finding = by_object(document, "fk_type_mismatch")["auth_user_groups(user_id)"]
    assert finding["model"] == "auth.User_groups"
    assert finding["data"]["field"] == "auth.User_groups.user"
    assert "in a migration of one of your own apps" in finding["hint"]
    assert "belongs to an installed package" in finding["hint"]
    assert finding["data"]["sql"] == [
        'ALTER TABLE "public"."auth_user_groups" ALTER COLUMN "user_id" TYPE bigint'
    ]


@given(
    values=st.lists(st.booleans(), max_size=2, unique=True),
    freqs=st.lists(st.floats(min_value=0, max_value=0.5), min_size=2, max_size=2),
    null_frac=st.floats(min_value=0, max_value=1),
)
def test_value_shares_stay_shares(values, freqs, null_frac):
    row = {
        "common_values": values,
        "common_freqs": freqs[: len(values)],
        "null_frac": null_frac,
    }
    shares = value_shares(row)
    assert shares is not None and set(shares) == {True, False}
    assert all(0 <= share <= 1 for share in shares.values())
    assert value_shares({**row, "common_values": None}) is None
