# The DDL SQLAlchemy's create_all would run for MODULE:ATTR (a declarative base, or a MetaData),
# produced by the backend's own Python through a mock engine (no database, no driver needed).
# Run by aidock-provision (src/reconcile/models.rs) as `python -c <this> MODULE:ATTR`, in the
# directory the backend's modules import from. Prints one JSON object: {"sql": ...} or
# {"error": kind, "message": ...}.
import importlib
import json
import os
import sys
import traceback


def fail(kind, message):
    print(json.dumps({"error": kind, "message": message}))
    sys.exit(3)


spec = sys.argv[1]
# As for `alembic`: the current directory is importable.
sys.path.insert(0, os.getcwd())
try:
    import sqlalchemy
    from sqlalchemy import MetaData, create_mock_engine
except ImportError as e:
    fail("sqlalchemy", str(e))
module, _, attr = spec.partition(":")
if not module or not attr:
    fail("spec", spec)
try:
    mod = importlib.import_module(module)
except BaseException:  # noqa: BLE001 - whatever the import raises is the user's to see
    lines = traceback.format_exc().strip().splitlines()
    fail("import", "\n".join(lines[-8:]))
obj = mod
for part in attr.split("."):
    if not hasattr(obj, part):
        fail("attr", part)
    obj = getattr(obj, part)
if isinstance(obj, MetaData):
    metadata = obj
elif isinstance(getattr(obj, "metadata", None), MetaData):
    metadata = obj.metadata
else:
    fail("type", type(obj).__name__)

statements = []
engine = None


def collect(sql, *args, **kwargs):
    statements.append(str(sql.compile(dialect=engine.dialect)).strip().rstrip(";"))


engine = create_mock_engine("postgresql://", collect)
try:
    metadata.create_all(engine, checkfirst=False)
except BaseException:  # noqa: BLE001
    lines = traceback.format_exc().strip().splitlines()
    fail("create_all", "\n".join(lines[-8:]))
print(json.dumps({
    "sql": "".join(s + ";\n\n" for s in statements),
    "sqlalchemy": sqlalchemy.__version__,
    "tables": len(metadata.tables),
}))
