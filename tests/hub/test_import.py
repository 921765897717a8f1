"""``ferry hub import FILE``: the reference's example as it stands, idempotent, all or
nothing; and the password a weak imported password must be changed for."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from hub import Session
from tests.helpers import Hub, db_rows, ferry, http, login

EXAMPLE = Path(__file__).parent / "data" / "import-example.yaml"
# what an import writes; check-ins and logins touch other tables (clients, api_keys.last_used)
TABLES = ("organizations", "users", "user_roles", "user_rules", "collaborations",
          "collaboration_organizations", "nodes", "roles", "role_rules")


def run_import(hub: Hub, env: dict[str, str], path: Path) -> Any:
    return ferry("hub", "import", str(path), "--user", "--name", hub.name, "--config",
                 str(hub.config_file), env=env)


def written(hub: Hub) -> dict[str, list[tuple[Any, ...]]]:
    rows = db_rows(hub.database)
    return {t: rows[t] for t in TABLES}


def test_the_reference_example_imports_as_it_stands(hub: Hub, session: Session,
                                                    env: dict[str, str]) -> None:
    first = run_import(hub, env, EXAMPLE)
    assert first.returncode == 0, first.stderr
    # 3 orgs, 6 users, 3 collaborations, 7 nodes, 4 docker jobs
    assert "created 23, updated 0" in first.stdout
    orgs = {o["name"]: o for o in session.find("Organization")}
    assert {"IKNL", "Small Organization", "Big Organization"} <= set(orgs)
    assert orgs["IKNL"]["zipcode"] == "3511DT" and orgs["IKNL"]["address2"] == ""
    assert orgs["IKNL"]["public_key"].startswith("LS0tLS1CRUdJTiBQVUJMSUMgS0VZ")
    users = session.find("User where organization=IKNL")
    assert {u["username"] for u in users} == {"admin", "frank@iknl.nl", "melle@iknl.nl"}
    # least privilege, not superuser
    assert {u["role"] for u in users} == {"viewer"}
    zeppelin = session.find_one("Collaboration where name=ZEPPELIN")
    assert zeppelin is not None and not zeppelin["encrypted"]
    assert len(zeppelin["organizations"]) == 3
    nodes = session.related("Collaboration", zeppelin["id"], "nodes")
    assert len(nodes) == 3 and {n["organization"] for n in nodes} == set(zeppelin["organizations"])
    assert len(session.find("Node where collaboration=SLIPPERS")) == 2
    # each collaboration's tasks: a docker job for all its participants, started by the first
    jobs = session.find("Job where kind=docker")
    assert sorted(j["code"] for j in jobs) == [
        "hello-world (PIPELINE task 1)", "hello-world (SLIPPERS task 1)",
        "hello-world (SLIPPERS task 2)", "hello-world (ZEPPELIN task 1)"]
    slippers = next(j for j in jobs if j["code"] == "hello-world (SLIPPERS task 1)")
    assert slippers["docker"]["image"] == "hello-world" and slippers["status"] == "waiting"
    assert slippers["organization"] == orgs["Small Organization"]["id"]
    runs = session.find(f"task WHERE job.id={slippers['id']}")
    assert {r["organization"] for r in runs} == {orgs["Small Organization"]["id"],
                                                 orgs["Big Organization"]["id"]}

    # the file's api_key is the node's key: an agent enrolls with it
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": "123e4567-e89b-12d3-a456-426614174004", "machine_id": uuid.uuid4().hex,
        "code": "iknl-pipeline"})
    assert status == 200, enrolled
    pipeline_iknl = session.find_one("Node where collaboration=PIPELINE and organization=IKNL")
    assert pipeline_iknl is not None
    assert session.get("Client", enrolled["client_id"])["node"] == pipeline_iknl["id"]

    # the same file again changes nothing
    before = written(hub)
    second = run_import(hub, env, EXAMPLE)
    assert second.returncode == 0, second.stderr
    assert "created 0, updated 0" in second.stdout and "nothing changed" in second.stdout
    assert written(hub) == before


def test_a_weak_imported_password_must_be_changed_first(hub: Hub, env: dict[str, str]
                                                        ) -> None:
    assert run_import(hub, env, EXAMPLE).returncode == 0
    api = hub.api
    status, body = http("POST", f"{api}/token", {"username": "stan", "password": "password"})
    assert status == 403 and body["error"]["code"] == "password_change_required", body
    assert "/password/change" in body["error"]["message"]
    status, body = http("POST", f"{api}/password/change", {
        "username": "stan", "password": "password", "new_password": "password"})
    assert status == 422 and body["error"]["field"] == "new_password"
    status, body = http("POST", f"{api}/password/change", {
        "username": "stan", "password": "wrong", "new_password": "stan's new password"})
    assert status == 401
    status, body = http("POST", f"{api}/password/change", {
        "username": "stan", "password": "password", "new_password": "stan's new password"})
    assert status == 200, body
    assert login(hub, "stan", "stan's new password")
    status, _ = http("POST", f"{api}/token", {"username": "stan", "password": "password"})
    assert status == 401


def test_roles_come_from_the_file(hub: Hub, session: Session, env: dict[str, str],
                                  tmp_path: Path) -> None:
    path = tmp_path / "roles.yaml"
    path.write_text("""
organizations:
  - name: Studio
    users:
      - {username: ada, password: "a long password", role: organization admin}
      - {username: bob, password: "a long password", roles: [researcher, viewer]}
      - {username: cy, password: "a long password"}
""")
    result = run_import(hub, env, path)
    assert result.returncode == 0, result.stderr
    roles = {u["username"]: sorted(r["name"] for r in session.related("User", u["id"], "roles"))
             for u in session.find("User where organization=Studio")}
    assert roles == {"ada": ["organization admin"], "bob": ["researcher", "viewer"],
                     "cy": ["viewer"]}
    # a changed file is applied: bob loses viewer, the others stay
    path.write_text(path.read_text().replace("roles: [researcher, viewer]", "role: researcher"))
    result = run_import(hub, env, path)
    assert result.returncode == 0 and "updated 1" in result.stdout, result.stdout
    bob = session.find_one("User where username=bob")
    assert bob is not None and [r["name"] for r in session.related("User", bob["id"], "roles")
                                ] == ["researcher"]


BROKEN = [
    # (what is wrong, the file, what the error names)
    ("an unknown participant", EXAMPLE.read_text().replace(
        "- name: Big Organization\n        api_key: 123e4567-e89b-12d3-a456-426614174007",
        "- name: Huge Organization\n        api_key: 123e4567-e89b-12d3-a456-426614174007"),
     "collaborations[2] (SLIPPERS): participants[1]: no organization 'Huge Organization'"),
    ("an unknown role", EXAMPLE.read_text().replace(
        "username: stan\n", "username: stan\n        role: boss\n"),
     "organizations[1] (Small Organization).users[1] (stan): unknown role"),
    ("a bad public key", EXAMPLE.read_text().replace("public_key: LS0t", "public_key: xLS0t", 1),
     "organizations[0] (IKNL): field 'public_key'"),
    ("a short api key", EXAMPLE.read_text().replace(
        "123e4567-e89b-12d3-a456-426614174006", "short"),
     "collaborations[2] (SLIPPERS): participants[0] (Small Organization): field 'api_key'"),
    ("an unknown field", EXAMPLE.read_text().replace("zipcode:    54331", "zipcod: 54331"),
     "organizations[2]: unknown field 'zipcod'"),
    ("not YAML", "organizations: [\n", "is not valid YAML at line"),
    ("a user without a name", "organizations:\n  - name: X\n    users:\n      - password: p\n",
     "organizations[0] (X).users[0]: 'username' is required"),
]


def test_a_broken_file_changes_nothing_and_names_the_entry(hub: Hub, env: dict[str, str],
                                                           tmp_path: Path) -> None:
    before = written(hub)
    for what, text, named in BROKEN:
        path = tmp_path / "broken.yaml"
        path.write_text(text)
        result = run_import(hub, env, path)
        assert result.returncode == 2, (what, result.stdout, result.stderr)
        assert named in result.stderr, (what, result.stderr)
        assert "nothing was imported" in result.stderr
        assert written(hub) == before, what
    missing = run_import(hub, env, tmp_path / "absent.yaml")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_import_on_a_hub_never_started(tmp_path: Path, env: dict[str, str]) -> None:
    """``ferry hub new`` then ``ferry hub import``, with no start between: the import makes
    the database, root and hq as a first start would, and the hub then starts on them."""
    made = ferry("hub", "new", "--user", "--name", "fresh", "--port", "0", "--no-input",
                 env=env)
    assert made.returncode == 0, made.stderr
    no_env_password = {k: v for k, v in env.items() if k != "FERRY_ROOT_PASSWORD"}
    result = ferry("hub", "import", str(EXAMPLE), "--user", "--name", "fresh",
                   env=no_env_password)
    assert result.returncode == 0, result.stderr
    assert "this hub had never started: made user root and site hq" in result.stdout
    password = next(line.split()[2] for line in result.stdout.splitlines()
                    if line.startswith("root password: "))
    assert "created 23, updated 0" in result.stdout
    data_dir = Path(env["XDG_DATA_HOME"]) / "ferry" / "hub" / "fresh"
    assert (data_dir / "root-password.txt").read_text().strip() == password
    assert (data_dir / "root-password.txt").stat().st_mode & 0o077 == 0
    # a second import says nothing of root: it was made once
    again = ferry("hub", "import", str(EXAMPLE), "--user", "--name", "fresh", env=env)
    assert again.returncode == 0 and "never started" not in again.stdout, again.stdout
    assert "nothing changed" in again.stdout

    config = Path(env["XDG_CONFIG_HOME"]) / "ferry" / "hub" / "fresh.yaml"
    hub = Hub("hub", "fresh", tmp_path, yaml.safe_load(config.read_text())["application"], env)
    hub.start()
    try:
        root = Session(hub.url, username="root", password=password)
        assert {"IKNL", "Small Organization", "Big Organization"} <= {
            o["name"] for o in root.find("Organization")}
        assert root.find_one("Site where name=hq") is not None
        assert "created user root" not in hub.log()  # the start made no second root
    finally:
        hub.kill()
