import pytest

SEEDED = {"General", "IT", "Finance", "HR", "Marketing", "Operations"}


@pytest.mark.parametrize("round", range(3))
def test_reads_the_seeded_data_and_no_other_tests_writes(client, round):
    names = set(client.get("/departments").json())
    assert SEEDED <= names
    assert "Research" not in names, "another test's write is visible"


@pytest.mark.parametrize("round", range(3))
def test_writes_to_its_own_database(client, round):
    assert client.post("/departments", json={"name": "Research"}).status_code == 201
    assert "Research" in client.get("/departments").json()


def test_the_seeded_admin_logs_in_with_bcrypt(client):
    assert client.post("/login", json={"username": "admin", "password": "AdminPassword123"}).status_code == 200
    assert client.post("/login", json={"username": "admin", "password": "wrong"}).status_code == 401
