"""`make serve`: the example shop live, with the staff dashboard and the admin.

Starts a throwaway PostgreSQL (unless DATABASE_URL), migrates, seeds, requests the shop's
views, saves two dbreport snapshots a "day" apart (the dashboard's history charts), creates
a demo-only staff user, prints where to log in, then runs the development server in this
process (the embedded server lives as long as it does).
"""

from __future__ import annotations

import os
import sys

from demo import flush_statistics, heading, show_history, show_requests

# Demo only: a known password on a throwaway database, printed below.
USERNAME = "staff"
PASSWORD = "dbtuning-demo"
ADDRESS = os.environ.get("SERVE_ADDRESS", "127.0.0.1:8000")
ORDERS = int(os.environ.get("DEMO_ORDERS", "20000"))


def staff_user() -> None:
    from django.contrib.auth.models import Permission, User

    user, _ = User.objects.get_or_create(username=USERNAME)
    user.is_staff = True
    user.set_password(PASSWORD)
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_report"))


def main() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    heading("migrate, seed, requests, two snapshots")
    call_command("migrate", verbosity=0)
    call_command("seed", orders=ORDERS, customers=max(100, ORDERS // 10), flush=True)
    show_requests()
    flush_statistics()
    show_history()
    staff_user()
    heading("serving")
    print(f"dashboard: http://{ADDRESS}/dbtuning/")
    print(f"admin:     http://{ADDRESS}/admin/")
    print(f"log in as {USERNAME} / {PASSWORD} (demo only: a throwaway database)")
    sys.stdout.flush()
    call_command("runserver", ADDRESS, use_reloader=False)


if __name__ == "__main__":
    main()
