"""Set up and start argilla-server with the SQLite test search engine (run with argilla-server's Python).

    python launch.py HOST PORT OWNER PASSWORD WORKSPACE     (the owner's API key: env ARGILLA_OWNER_API_KEY)

One process does what `argilla_server database migrate`, `argilla_server database users
create` and `argilla_server start` do, calling the same functions those commands call:
three interpreter starts of argilla-server cost ~12 s each on the test machines. The
engine must be registered in the server's process before the app starts, which
`argilla_server start` cannot do.
"""

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlite_engine  # noqa: E402,F401  (registers the engine)
import uvicorn  # noqa: E402
from argilla_server.cli.database.migrate import migrate_db  # noqa: E402
from argilla_server.cli.database.users.create import _create  # noqa: E402
from argilla_server.enums import UserRole  # noqa: E402

if __name__ == "__main__":
    host, port, owner, password, workspace = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    migrate_db(revision="head")
    asyncio.run(_create(first_name=owner, username=owner, role=UserRole.owner, password=password,
                        api_key=os.environ["ARGILLA_OWNER_API_KEY"], workspace=[workspace]))
    uvicorn.run("argilla_server:app", host=host, port=port, access_log=False, log_level="warning")
