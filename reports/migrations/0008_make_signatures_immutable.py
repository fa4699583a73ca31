"""The database refuses to change a signature once written (RELIABILITY SIG-04, 21 CFR 11.70).

Same rule and same reasoning as the audit trail (0006): UPDATE is refused on both databases,
DELETE on PostgreSQL (SQLite's test flush deletes rows). Verification catches the rest.
"""

from django.db import migrations

POSTGRES_UP = """
CREATE FUNCTION reports_signature_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'signatures cannot be changed';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reports_signature_immutable
    BEFORE UPDATE OR DELETE ON reports_signature
    FOR EACH ROW EXECUTE FUNCTION reports_signature_immutable();
"""
POSTGRES_DOWN = """
DROP TRIGGER reports_signature_immutable ON reports_signature;
DROP FUNCTION reports_signature_immutable();
"""
SQLITE_UP = """
CREATE TRIGGER reports_signature_no_update BEFORE UPDATE ON reports_signature
BEGIN SELECT RAISE(ABORT, 'signatures cannot be changed'); END;
"""
SQLITE_DOWN = "DROP TRIGGER reports_signature_no_update;"


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
    dependencies = [("reports", "0007_add_signatures_and_outbox")]

    operations = [migrations.RunPython(forwards, backwards)]
