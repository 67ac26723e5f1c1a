import json
import uuid

import pytest
from sqlalchemy import text


def snapshot(engine, tables=("users", "templates", "import_jobs")):
    with engine.connect() as conn:
        return {t: sorted(conn.execute(text(f"SELECT row_to_json(x)::text FROM {t} x")).scalars()) for t in tables}


@pytest.fixture
def lambda_stub(db):
    """The hand-off: an asynchronous invoke of the worker function, on a real local Lambda endpoint."""
    from tests.support.fake_aws import FakeAws

    fake = FakeAws().start().use()
    yield fake
    fake.stop()


def start(api_client, fake, token, body):
    before = len(fake.invokes)
    status, answer, _ = api_client.call("POST", "/admin/import", token=token, body=body)
    assert status == 202, answer
    assert fake.invoked_functions[before:] == ["ImportWorkerFunction"]
    assert fake.invokes[before:] == [{"job_id": answer["job"]["id"]}]
    return answer["job"]


def run_worker(job_id):
    from tests.support.events import LambdaContext
    from tests.support.template import load_handler

    return load_handler("ImportWorkerFunction")({"job_id": job_id}, LambdaContext("ImportWorkerFunction"))


def users_rows(n, start=0):
    return [{"email": f"Person{i}@Example.com", "password": f"password-{i:04d}", "display_name": f"P {i}"} for i in range(start, start + n)]


def test_import_succeeds(api_client, factory, db, lambda_stub):
    client = factory.client()
    admin = factory.user(client, "admin")
    token = factory.token(admin)
    body = {
        "users": [*users_rows(3), {"email": "boss@example.com", "password": "boss-password", "role": "admin"}],
        "templates": [{"name": "welcome", "content": "Hi {{name}}"}],
    }
    job = start(api_client, lambda_stub, token, body)
    assert (
        job["status"] == "queued" and job["errors"] == [] and set(job) == {"id", "status", "created_at", "updated_at", "counts", "errors"}
    )
    assert "password-0000" not in json.dumps(job)

    assert run_worker(job["id"]) == {"job_id": job["id"], "status": "succeeded"}
    status, answer, _ = api_client.call("GET", f"/admin/import/{job['id']}", token=token)
    assert status == 200
    assert answer["job"]["status"] == "succeeded" and answer["job"]["counts"] == {"users": 4, "templates": 1}
    with db.connect() as conn:
        roles = dict(conn.execute(text("SELECT email, role FROM users WHERE client_id = :c"), {"c": client.id}).all())
        payload = conn.execute(text("SELECT payload::text FROM import_jobs")).scalar()
    assert roles == {
        admin.email: "admin",
        "person0@example.com": "user",
        "person1@example.com": "user",
        "person2@example.com": "user",
        "boss@example.com": "admin",
    }
    assert "password" not in payload  # plaintext passwords are not kept once the job ended
    login = {"email": "person1@example.com", "password": "password-0001", "client_id": str(client.id)}
    assert api_client.call("POST", "/auth/login", body=login)[0] == 200
    # a second delivery of the same invoke does nothing
    assert run_worker(job["id"])["status"] == "skipped"
    assert api_client.call("GET", "/templates", token=token)[1]["items"][0]["variables"] == ["name"]


def test_invoke_payload_names_the_job(api_client, factory, lambda_stub):
    token = factory.token(factory.user(factory.client(), "admin"))
    job = start(api_client, lambda_stub, token, {"users": users_rows(1)})
    assert lambda_stub.invokes == [{"job_id": job["id"]}] and lambda_stub.unsigned == []


def test_all_or_nothing_with_row_errors(api_client, factory, db, lambda_stub):
    client = factory.client()
    admin = factory.user(client, "admin", email="taken@example.com")
    token = factory.token(admin)
    api_client.call("POST", "/templates", token=token, body={"name": "existing", "content": "x"})
    body = {
        "users": [
            {"email": "ok@example.com", "password": "long-enough"},
            {"email": "TAKEN@example.com", "password": "long-enough"},
            {"email": "ok@example.com", "password": "long-enough"},
            {"email": "bad", "password": "long-enough"},
            {"email": "r@example.com", "password": "long-enough", "role": "superadmin"},
            {"email": "s@example.com", "password": "short"},
            {"email": "t@example.com", "password": 12345678, "extra": True},
        ],
        "templates": [
            {"name": "existing", "content": "y"},
            {"name": "fine", "content": "z"},
            {"name": "fine", "content": "w"},
            {"content": "no name"},
        ],
    }
    before = snapshot(db, ("users", "templates"))
    job = start(api_client, lambda_stub, token, body)
    assert run_worker(job["id"])["status"] == "failed"
    assert snapshot(db, ("users", "templates")) == before
    answer = api_client.call("GET", f"/admin/import/{job['id']}", token=token)[1]["job"]
    assert answer["status"] == "failed" and answer["counts"] == {"users": 0, "templates": 0}
    errors = {(e["kind"], e["row"], e["field"]) for e in answer["errors"]}
    assert errors == {
        ("users", 1, "email"),
        ("users", 2, "email"),
        ("users", 3, "email"),
        ("users", 4, "role"),
        ("users", 5, "password"),
        ("users", 6, "password"),
        ("users", 6, "extra"),
        ("templates", 0, "name"),
        ("templates", 2, "name"),
        ("templates", 3, "name"),
    }
    assert all(e["message"] for e in answer["errors"])
    assert "long-enough" not in json.dumps(answer)
    assert "duplicate of row 0" in {e["message"] for e in answer["errors"] if e["row"] == 2 and e["kind"] == "users"}


def test_limits_and_bad_bodies(api_client, factory, db):
    token = factory.token(factory.user(factory.client(), "admin"))
    before = snapshot(db)
    too_many = {"users": users_rows(600), "templates": [{"name": f"t{i}", "content": "c"} for i in range(401)]}
    status, body, _ = api_client.call("POST", "/admin/import", token=token, body=too_many)
    assert status == 422 and "1000" in body["error"]["message"]
    for bad in (
        {},
        {"users": []},
        {"users": "x"},
        {"users": [1, 2]},
        {"rows": []},
        {"client_id": "x", "users": users_rows(1)},
        {"users": [{"email": "a@example.com", "password": "pass\u0000word"}]},
    ):
        status, body, _ = api_client.call("POST", "/admin/import", token=token, body=bad)
        assert status == 422 and body["error"]["code"] == "validation_error", bad
    assert api_client.call("POST", "/admin/import", token=token, raw_body="{oops")[0] == 400
    assert snapshot(db) == before


def test_roles_and_tenancy(api_client, factory, db, lambda_stub):
    client, other = factory.client(), factory.client()
    admin, user = factory.user(client, "admin"), factory.user(client)
    stranger = factory.user(other, "admin")
    job = start(api_client, lambda_stub, factory.token(admin), {"users": users_rows(1)})
    before = snapshot(db)
    status, body, _ = api_client.call("POST", "/admin/import", token=factory.token(user), body={"users": users_rows(1)})
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert api_client.call("POST", "/admin/import", body={"users": users_rows(1)})[0] == 401
    assert api_client.call("GET", f"/admin/import/{job['id']}", token=factory.token(user))[0] == 403
    assert api_client.call("GET", f"/admin/import/{job['id']}")[0] == 401
    for job_id in (job["id"], str(uuid.uuid4())):
        status, body, _ = api_client.call("GET", f"/admin/import/{job_id}", token=factory.token(stranger))
        assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = api_client.call("GET", "/admin/import/not-a-uuid", token=factory.token(admin))
    assert status == 422 and body["error"]["details"][0]["field"] == "job_id"
    # an admin cannot import into another client
    assert (
        api_client.call("POST", "/admin/import", token=factory.token(admin), body={"client_id": str(other.id), "users": users_rows(1)})[0]
        == 404
    )
    assert snapshot(db) == before

    su = factory.token(factory.user(None, "superadmin"))
    assert api_client.call("POST", "/admin/import", token=su, body={"users": users_rows(1)})[0] == 422
    su_job = start(api_client, lambda_stub, su, {"client_id": str(other.id), "users": users_rows(1)})
    assert api_client.call("GET", f"/admin/import/{su_job['id']}", token=factory.token(stranger))[0] == 200
    assert api_client.call("GET", f"/admin/import/{job['id']}", token=su)[0] == 200


def test_failed_hand_off_is_recorded(api_client, factory, db, lambda_stub):
    token = factory.token(factory.user(factory.client(), "admin"))
    lambda_stub.invoke_status = 429  # throttled on every (bounded) retry
    status, body, _ = api_client.call("POST", "/admin/import", token=token, body={"users": users_rows(2)})
    assert status == 502 and body["error"]["code"] == "upstream_error"
    with db.connect() as conn:
        status_, payload = conn.execute(text("SELECT status, payload::text FROM import_jobs")).one()
    assert status_ == "failed" and "password" not in payload


def test_worker_ignores_bad_events():
    from tests.support.events import LambdaContext
    from tests.support.template import load_handler

    handler = load_handler("ImportWorkerFunction")
    for event in ({}, {"job_id": "nope"}, None):
        assert handler(event, LambdaContext())["status"] == "ignored"


def test_worker_on_unknown_job(db):
    assert run_worker(str(uuid.uuid4()))["status"] == "skipped"


def test_full_thousand_rows(api_client, factory, db, lambda_stub):
    client = factory.client()
    token = factory.token(factory.user(client, "admin"))
    body = {"users": users_rows(900), "templates": [{"name": f"tpl-{i}", "content": "c {{x}}"} for i in range(100)]}
    job = start(api_client, lambda_stub, token, body)
    assert run_worker(job["id"])["status"] == "succeeded"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE client_id = :c"), {"c": client.id}).scalar() == 901
        assert conn.execute(text("SELECT count(*) FROM templates")).scalar() == 100
    # rows written in one transaction share created_at: the id breaks the tie, so paging still works
    got, cursor = [], None
    while True:
        q = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        status, page, _ = api_client.call("GET", "/users", token=token, query=q)
        assert status == 200
        got += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(got) == len(set(got)) == 901


def test_sweeper_fails_a_job_whose_worker_died(factory, db):
    from sqlalchemy import text

    from bitworks.db import session_scope
    from bitworks.models import ImportJob
    from tests.support.template import load_handler

    client = factory.client()
    with session_scope() as s:
        stuck = ImportJob(client_id=client.id, payload={"users": [{"email": "a@example.com"}]}, status="running")
        fresh = ImportJob(client_id=client.id, payload={"users": []}, status="running")
        s.add_all([stuck, fresh])
        s.flush()
        s.execute(text("UPDATE import_jobs SET updated_at = now() - interval '21 minutes' WHERE id = :id"), {"id": stuck.id})
    counts = load_handler("SweeperFunction")({"source": "aws.events"}, None)
    assert counts["imports_expired"] == 1
    with session_scope() as s:
        assert s.get(ImportJob, stuck.id).status == "failed"
        assert s.get(ImportJob, stuck.id).payload == {}, "no plaintext passwords left behind"
        assert s.get(ImportJob, fresh.id).status == "running"
