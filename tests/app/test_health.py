import pytest
from django.db import connection


@pytest.mark.usefixtures("db")
def test_healthz_is_200_when_the_database_answers(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")  # probes use any host name
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("db")
def test_healthz_is_503_when_the_database_does_not_answer(client, tmp_path):
    connection.close()
    saved = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = saved
    assert response.status_code == 503, response.content
    assert response.json() == {"status": "unhealthy"}, "no database detail for the public"
