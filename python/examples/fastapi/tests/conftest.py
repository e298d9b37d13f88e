import pytest
from fastapi.testclient import TestClient
from sqlalchemy.pool import NullPool
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.main import app, get_db

pytest_plugins = ["pytest_aidock"]


@pytest.fixture
def client(aidock_async_url):
    """The app, its `get_db` reading and writing this test's own database."""
    # NullPool: TestClient runs the app on an event loop of its own; no connection outlives it.
    engine = create_async_engine(aidock_async_url, poolclass=NullPool)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def test_db():
        async with sessions() as session:
            yield session

    app.dependency_overrides[get_db] = test_db
    with TestClient(app) as test_client:
        yield test_client
    app.dependency_overrides.clear()
