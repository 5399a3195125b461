from flask.testing import FlaskClient


def test_healthz_reports_database_and_queue(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "checks": {"database": "ok", "queue": "ok"}}
