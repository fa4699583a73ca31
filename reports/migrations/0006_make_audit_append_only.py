"""The database itself refuses to change audit rows (RELIABILITY AU-03).

PostgreSQL refuses UPDATE and DELETE of any row. SQLite, the embedded demo database, refuses
UPDATE; it cannot refuse DELETE because Django's test database flush deletes rows there (on
PostgreSQL the flush truncates, which row triggers do not see).
"""

from django.db import migrations

POSTGRES_UP = """
CREATE FUNCTION reports_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reports_auditevent_append_only
    BEFORE UPDATE OR DELETE ON reports_auditevent
    FOR EACH ROW EXECUTE FUNCTION reports_audit_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER reports_auditevent_append_only ON reports_auditevent;
DROP FUNCTION reports_audit_append_only();
"""
SQLITE_UP = """
CREATE TRIGGER reports_auditevent_no_update BEFORE UPDATE ON reports_auditevent
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"""
SQLITE_DOWN = "DROP TRIGGER reports_auditevent_no_update;"


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_UP)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_DOWN)


class Migration(migrations.Migration):
    dependencies = [("reports", "0005_add_audit_trail")]

    operations = [migrations.RunPython(forwards, backwards)]
