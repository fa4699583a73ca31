"""Creates the Clinician and Supervisor groups with their permissions (see reports/roles.py)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy of reports.roles.ROLE_PERMISSIONS as of this migration: a migration must not
# change when the code it was written beside changes.
ROLE_PERMISSIONS = {
    "Clinician": ("lookup_patients", "compose_report"),
    "Supervisor": ("lookup_patients", "verify_report"),
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations have run; create ours now so the
    # groups can be given them in this same migration.
    app_config = apps.get_app_config("reports")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="reports", codename__in=codenames)
        )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_add_global_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
