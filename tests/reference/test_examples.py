"""Every example of the five reference documents (../shared/reference/), run as printed
against a real hub and a real agent, with the documented outcome asserted.

Each example is one test id, ``<document>: <section>``. Its printed code is kept here as
printed, and run with only the ids, credentials and addresses adapted (``adapt``):
the ids of the reference's records are ids of this hub's. Where Ferry is deliberately
different, the test asserts the documented difference; docs/REFERENCE.md lists each
example with its status and the reason for each difference. An example that needs a
feature still being built is written as it should then pass, and skipped naming it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import config as configfile
from core.errors import ApiError
from hub.admin import AdminSession
from hub.config import HubConfig
from hub.shell import run_shell
from tests.helpers import ROOT_PASSWORD, db_query, ferry, free_port, http, wait_for
from tests.reference.conftest import Ref

pytestmark = [pytest.mark.slow, pytest.mark.hub_database]

DOCS = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
DATA = Path(__file__).parent / "data"
Example = Callable[[Ref], None]
EXAMPLES: dict[str, tuple[Example, str | None]] = {}


def example(name: str, *, lands_with: str | None = None) -> Callable[[Example], Example]:
    """Register an example; ``lands_with``: the feature it waits for (skipped until then)."""
    def register(fn: Example) -> Example:
        EXAMPLES[name] = (fn, lands_with)
        return fn
    return register


def run(printed: str, names: dict[str, Any], **adapt: str) -> dict[str, Any]:
    """Run printed Python with the names it expects, each ``adapt`` key replaced by its
    value (an id of this hub's for the reference's); the names it made."""
    code = textwrap.dedent(printed)
    for old, new in adapt.items():
        assert old in code, f"{old!r} is not in the printed example"
        code = code.replace(old, new)
    exec(compile(code, "<example>", "exec"), names)
    return names


def shell(ref: Ref, printed: str, **adapt: str) -> str:
    """Run printed shell code in ``ferry hub shell`` (in this process: the same admin
    session the command opens); what it printed."""
    code = textwrap.dedent(printed)
    for old, new in adapt.items():
        assert old in code, f"{old!r} is not in the printed example"
        code = code.replace(old, new)
    loaded = configfile.load(ref.hub.config_file, HubConfig)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_shell(AdminSession(loaded.config, loaded.section, ref.hub.paths.data_dir),
                         script=code) == 0
    return out.getvalue()


# ---------------------------------------------------------------- clients.rst

@example("clients: query")
def clients_query(ref: Ref) -> None:
    server = ref.offline_client(shared=True)  # enrolled as a system service's agent: type 1
    names = run("""
        all_clients = session.find('Client')
        servers = session.find('Client where type=1')
    """, {"session": ref.session})
    assert {ref.client_id, server} <= {c["id"] for c in names["all_clients"]}
    assert server in {c["id"] for c in names["servers"]}
    assert all(c["type"] == 1 for c in names["servers"])
    # the test's agent runs as a user (--user): a user server, type 2, as clients.rst says
    assert [c["id"] for c in ref.session.find("Client where type=2")] == [ref.client_id]
    # its lane is a compute lane (type 5) whose parent is the agent's client
    lanes = ref.session.find("Client where type=5")
    assert [lane["parent"] for lane in lanes] == [ref.client_id]


CLIENT_FIELDS = {"id", "code", "user", "user_hr", "created", "type", "site", "site_hr",
                 "description", "host_id", "last_checkin", "status", "os", "type_hr",
                 "username", "version", "wan_ip", "parent", "benchmark", "metrics",
                 "metadata", "modified", "modifier"}


@example("clients: the client record")
def clients_record(ref: Ref) -> None:
    client = ref.session.get("Client", ref.client_id)
    assert set(client) >= CLIENT_FIELDS
    assert (client["type"], client["type_hr"], client["status"], client["site_hr"]) == (
        2, "user server", "online", "hq")
    assert client["os"] in ("windows", "linux", "mac", "raspbian", "solaris")
    metrics = client["metrics"]
    assert {"c", "in", "l", "m", "mpf", "mpt", "mvf", "mvt", "out"} <= set(metrics)
    assert {"s", "s_a", "s_t"} <= set(metrics["in"]) and {"s", "s_a", "s_t"} <= set(
        metrics["out"])
    assert re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}(, ([0-9A-F]{2}:){5}[0-9A-F]{2})*",
                        client["host_id"]), client["host_id"]


@example("clients: client states and modify")
def clients_modify(ref: Ref) -> None:
    run("""
        session.update('Client', '61cd853e44b630d9e10cfb2e', {'status':"disabled"})
    """, {"session": ref.session}, **{"61cd853e44b630d9e10cfb2e": ref.client_id})
    assert ref.session.get("Client", ref.client_id)["status"] == "disabled"
    # only a disabled client is written online again; offline is never written
    with pytest.raises(ApiError) as refused:
        ref.session.update("Client", ref.client_id, {"status": "offline"})
    assert refused.value.status == 409 and "follows from missed check-ins" in str(refused.value)
    ref.session.update("Client", ref.client_id, {"status": "online"})
    assert ref.session.get("Client", ref.client_id)["status"] == "online"
    gone = ref.offline_client(shared=True)
    ref.session.update("Client", gone, {"status": "disabled"})
    assert ref.session.get("Client", gone)["status"] == "disabled-offline"
    ref.session.update("Client", gone, {"status": "online"})
    assert ref.session.get("Client", gone)["status"] == "offline"


@example("clients: create")
def clients_create(ref: Ref) -> None:
    with pytest.raises(ApiError) as refused:
        ref.session.create("Client", {"code": "WIN_SERVER"})
    assert refused.value.status in (403, 405) and "cannot be created" in refused.value.message


@example("clients: delete")
def clients_delete(ref: Ref) -> None:
    with pytest.raises(ApiError) as online:  # the note: a client must be offline
        ref.session.delete_one("Client", ref.client_id)
    assert online.value.status == 409
    gone = ref.offline_client()
    names = run("""
        session.delete_one('Client', '61cd853e44b630d9e10cfb2e')
    """, {"session": ref.session}, **{"61cd853e44b630d9e10cfb2e": gone})
    assert names["session"].find_one(f"Client where id={gone}") is None


# ---------------------------------------------------------------- jobs.rst

JOB_FIELDS = {"id", "code", "uri", "status", "created", "source", "source_hr", "destination",
              "destination_hr", "etr", "metadata", "parent", "parent_hr", "progress", "size",
              "speed", "user", "user_hr", "finished", "modified", "modifier"}


@example("jobs: query")
def jobs_query(ref: Ref) -> None:
    job = ref.paused_job()
    names = run("""
        jobs = session.find('Job')
    """, {"session": ref.session})
    [found] = [j for j in names["jobs"] if j["id"] == job["id"]]
    assert set(found) >= JOB_FIELDS
    assert found["status"] == "paused" and 0 <= found["progress"] <= 100
    assert found["user_hr"] == "user:root(root)"


@example("jobs: job queries by code")
def jobs_by_code(ref: Ref) -> None:
    made = ref.paused_job(code="x and y.png")
    names = run("""
        job = session.find_one('Job where code="x and y.png"')
        print(session.str(job))
    """, {"session": ref.session})
    assert names["job"]["id"] == made["id"]
    assert ref.session.find_one('Job where code="no such job"') is None  # the note


@example("jobs: jobs by user")
def jobs_by_user(ref: Ref) -> None:
    if ref.session.find_one("User where username=user@mail.com") is None:
        ref.session.create("User", {"username": "user@mail.com", "password": "a long password",
                                    "roles": ["researcher"], "organization": "root"})
    from hub import Session

    theirs = Session(ref.hub.url, username="user@mail.com", password="a long password")
    made = theirs.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                 "status": "paused"})
    names = run("""
        session.find_one('Job where user=user@mail.com')
    """, {"session": ref.session})
    assert names["session"].find_one("Job where user=user@mail.com")["id"] == made["id"]


@example("jobs: jobs by destination")
def jobs_by_destination(ref: Ref) -> None:
    if ref.session.find_one("Site where name=stockholm") is None:
        ref.session.create("Site", {"name": "stockholm"})
    made = ref.session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                      "destination": "stockholm", "status": "paused"})
    made = made[0] if isinstance(made, list) else made
    run("""
        session.find_one('Job where destination="stockholm"')
    """, {"session": ref.session})
    found = ref.session.find_one('Job where destination="stockholm"')
    assert found is not None and found["id"] == made["id"]
    assert found["destination_hr"] == "site:stockholm"


@example("jobs: list all downloads (source=hq)",
         lands_with="`Job where source=hq` for transfer jobs (issue 19, queries and listings)")
def jobs_downloads(ref: Ref) -> None:
    made = ref.transfer()
    names = run("""
        session.find_one('Job where source=hq')
    """, {"session": ref.session})
    assert names["session"].find_one("Job where source=hq") is not None
    assert made["id"] in {j["id"] for j in ref.session.find("Job where source=hq")}


@example("jobs: inactive jobs (finished=True)")
def jobs_inactive(ref: Ref) -> None:
    job = ref.paused_job()
    ref.session.update("job", job["id"], {"status": "aborted"})
    # gone from the active jobs after job_inactive_after (1 s here, an hour by default)
    wait_for(lambda: job["id"] not in {j["id"] for j in ref.session.find(
        "Job where status=aborted")}, what="the aborted job inactive")
    names = run("""
        session.find('Job where status=aborted', finished=True)
    """, {"session": ref.session})
    assert job["id"] in {j["id"] for j in names["session"].find(
        "Job where status=aborted", finished=True)}


@example("jobs: archived jobs (archived=True)")
def jobs_archived(ref: Ref) -> None:
    job = ref.paused_job()
    ref.session.update("job", job["id"], {"status": "done"})
    # archived after job_archive_after (2.5 s here, 14 days by default)
    wait_for(lambda: job["id"] in {j["id"] for j in ref.session.find(
        "Job where status=done", archived=True)}, what="the done job archived")
    names = run("""
        session.find('Job where status=done', archived=True)
    """, {"session": ref.session})
    assert job["id"] in {j["id"] for j in names["session"].find("Job where status=done",
                                                                archived=True)}
    assert job["id"] not in {j["id"] for j in ref.session.find("Job where status=done",
                                                               finished=True)}


@example("jobs: create a transfer job")
def jobs_create(ref: Ref) -> None:
    ref.transfer()  # the user lars@edit.com
    names = run("""
        job = session.create("Job",{
            "source":"share=projects/thefilm/latest_edit.mov",
            "destination":"lars@edit.com",
            "status":"paused"
        })
    """, {"session": ref.session})
    job = names["job"]
    # Ferry answers the one job made, as a query answers each job (not a list of one)
    assert isinstance(job, dict) and set(job) >= JOB_FIELDS
    # sent to a user: pending until lars chooses where it lands (jobs.rst's "pending";
    # docs/TRANSFERS.md), then paused as asked
    assert (job["code"], job["status"], job["destination_hr"]) == (
        "latest_edit.mov", "pending", "user:lars@edit.com")


@example("jobs: modify (pause, resume, abort, resend)")
def jobs_modify(ref: Ref) -> None:
    job = ref.paused_job(compute={"command": ["sleep", "30"], "items": "1"})
    printed = """
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"paused"})
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"waiting"})
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"aborted"})
    """
    seen = []
    for line in textwrap.dedent(printed).strip().splitlines():
        run(line, {"session": ref.session}, **{"614d660de50d45bb027c9bdd": job["id"]})
        seen.append(ref.session.get("Job", job["id"])["status"])
    assert seen[0] == "paused" and seen[1] in ("waiting", "running") and seen[2] == "aborted"
    resend = ref.transfer()
    run("""
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"pending"})
    """, {"session": ref.session}, **{"614d660de50d45bb027c9bdd": resend["id"]})
    assert ref.session.get("Job", resend["id"])["status"] == "pending"


@example("jobs: update_many to exclude a task")
def jobs_exclude(ref: Ref) -> None:
    job = ref.paused_job()
    task = ref.session.find(f"task WHERE job.id={job['id']}")[0]
    # printed on one line of 120 characters
    run("session.update_many('task', '614d660de50d45bb027c9bdd', [{'id':'b8401ce0-9c6c-"
        "4c32-98c6-61d18db01f07', 'status':'excluded'}])", {"session": ref.session},
        **{"614d660de50d45bb027c9bdd": job["id"],
           "b8401ce0-9c6c-4c32-98c6-61d18db01f07": task["id"]})
    assert ref.session.get("Task", task["id"])["status"] == "excluded"


@example("jobs: delete")
def jobs_delete(ref: Ref) -> None:
    job = ref.paused_job()
    run("""
        session.delete_one('job', '614d660de50d45bb027c9bdd')
    """, {"session": ref.session}, **{"614d660de50d45bb027c9bdd": job["id"]})
    assert ref.session.find_one(f"Job where id={job['id']}", finished=True) is None


@example("jobs: job statuses (which are writeable)")
def jobs_statuses(ref: Ref) -> None:
    job = ref.paused_job()
    for status in ("init", "running", "failed"):  # set by the hub only
        with pytest.raises(ApiError) as refused:
            ref.session.update("job", job["id"], {"status": status})
        assert refused.value.status == 422 and "cannot be written" in refused.value.message
    for status in ("waiting", "paused"):  # YES in the table (pending: transfers, above)
        ref.session.update("job", job["id"], {"status": status})
    assert ref.session.get("Job", job["id"])["status"] == "paused"


@example("jobs: task statuses (which are writeable)")
def jobs_task_statuses(ref: Ref) -> None:
    job = ref.paused_job()
    task = ref.session.find(f"task WHERE job.id={job['id']}")[0]
    for status in ("pending", "booting", "executing"):  # set by the hub only
        with pytest.raises(ApiError) as refused:
            ref.session.update_many("task", job["id"], [{"id": task["id"], "status": status}])
        assert refused.value.status == 422
    for status in ("onhold", "queued", "excluded", "failed", "done"):
        ref.session.update_many("task", job["id"], [{"id": task["id"], "status": status}])
        assert ref.session.get("Task", task["id"])["status"] == status


TASK_FIELDS = {"id", "uri", "status", "created", "source", "destination", "priority", "size",
               "finished", "time"}


@example("jobs: query tasks")
def jobs_query_tasks(ref: Ref) -> None:
    job = ref.paused_job()
    names = run("""
        session.find('task WHERE job.id=5a7325f8b7ef72f5f9d74bf4')
        session.find('task WHERE job.id=5a7325f8b7ef72f5f9d74bf4 AND status<>executing')
    """, {"session": ref.session}, **{"5a7325f8b7ef72f5f9d74bf4": job["id"]})
    tasks = names["session"].find(f"task WHERE job.id={job['id']}")
    assert [t["uri"] for t in tasks] == ["0", "1"]  # "0", "1", … as strings
    assert all(set(t) >= TASK_FIELDS and t["status"] == "queued" for t in tasks)
    assert len(ref.session.find(f"task WHERE job.id={job['id']} AND status<>executing")) == 2


@example("jobs: create tasks (mirrored paths)")
def jobs_create_tasks(ref: Ref) -> None:
    job = ref.transfer()
    (ref.projects / "_REF").mkdir(exist_ok=True)
    (ref.projects / "_REF" / "creatures_showreel_2018.mov").write_bytes(b"reel")
    # as printed it has one ')' too many: a SyntaxError in any Python
    printed = """
        session.create("task", {"tasks":["/Volumes/projects/creatures_showreel_2018.mov"]}, job["id"]))
    """
    with pytest.raises(SyntaxError):
        compile(textwrap.dedent(printed), "<example>", "exec")
    # a path on the user's own drive is the desktop app's; Ferry's tasks name share paths
    names = run(printed, {"session": ref.session, "job": job}, **{
        '["id"]))': '["id"])',
        "/Volumes/projects/creatures_showreel_2018.mov":
            "share=projects/_REF/creatures_showreel_2018.mov"})
    del names
    assert len(ref.session.find(f"task WHERE job.id={job['id']}")) == 2


@example("jobs: create tasks with a new destination path")
def jobs_create_tasks_destination(ref: Ref) -> None:
    (ref.projects / "_REF").mkdir(exist_ok=True)
    (ref.projects / "_REF" / "creatures_showreel_2018.mov").write_bytes(b"reel")
    job = ref.session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                     "destination": "share=projects/TMP/latest_edit.mov",
                                     "status": "paused"})
    job = job[0] if isinstance(job, list) else job
    run("""
        session.create("task", {
            "tasks":[
                {
                    "source":"share=projects/_REF/creatures_showreel_2018.mov",
                    "destination":"share=projects/TMP/creatures_showreel_2018_tmp.mov"
                }
            ]
        }, job["id"])
    """, {"session": ref.session, "job": job})
    tasks = ref.session.find(f"task WHERE job.id={job['id']}")
    assert "TMP/creatures_showreel_2018_tmp.mov" in {(t["destination"] or {}).get("path")
                                                     for t in tasks}
    with pytest.raises(ApiError):  # the note: the same source and destination again fails
        ref.session.create("task", {"tasks": [{
            "source": "share=projects/_REF/creatures_showreel_2018.mov",
            "destination": "share=projects/TMP/creatures_showreel_2018_tmp.mov"}]},
            job["id"], allow_duplicates=False)


@example("jobs: modifying tasks")
def jobs_modify_tasks(ref: Ref) -> None:
    made = ref.paused_job(code="my_transfer")
    task = ref.session.find(f"task WHERE job.id={made['id']}")[0]
    names = run("""
        job = session.find('job WHERE code="my_transfer"')

        updated_job = session.update_many("task", [{

            "id":"cc5f2afa-9ae4-46e0-9273-82ac802b20ff",

            "status":"onhold"

        }], entityid=job["id"])
    """, {"session": ref.session}, **{
        "cc5f2afa-9ae4-46e0-9273-82ac802b20ff": task["id"],
        # find answers a list; the example then reads one job's id from it
        "job = session.find('job": "job = session.find_one('job"})
    assert [t["status"] for t in names["updated_job"]] == ["onhold"]
    with pytest.raises(ApiError) as refused:  # only status, priority or metadata
        ref.session.update_many("task", made["id"], [{"id": task["id"], "size": 1}])
    assert refused.value.status == 422


@example("jobs: delete task")
def jobs_delete_task(ref: Ref) -> None:
    job = ref.paused_job()
    task = ref.session.find(f"task WHERE job.id={job['id']}")[0]
    with pytest.raises(ApiError) as refused:
        ref.session.delete_one("task", task["id"])
    assert "excluded" in refused.value.message


# ---------------------------------------------------------------- server-cli.rst

VERBS = ("new", "start", "stop", "files", "attach", "list", "shell", "import", "version")


def no_root_password(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "FERRY_ROOT_PASSWORD"}


def attached(ref: Ref, *args: str, env: dict[str, str] | None = None,
             ) -> tuple[subprocess.Popen[str], Path]:
    """``ferry hub start … --attach`` in this terminal; the process and where it writes."""
    out = ref.tmp / f"attached-{len(list(ref.tmp.glob('attached-*')))}.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "start", *args,
                                 "--attach"], stdout=sink, stderr=subprocess.STDOUT,
                                text=True, env=env or ref.env)
    return proc, out


def stop(proc: subprocess.Popen[str], *args: str, env: dict[str, str]) -> str:
    """``ferry hub stop …`` while this test reaps the attached hub (the stop waits for its
    process to be gone, and an exited child of ours stays until we reap it)."""
    stopping = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "stop", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
    assert proc.wait(timeout=60) == 0
    said, _ = stopping.communicate(timeout=60)
    assert stopping.returncode == 0, said
    return said


def served(proc: subprocess.Popen[str], out: Path) -> str:
    def up() -> str | None:
        assert proc.poll() is None, out.read_text()
        text = out.read_text()
        return text if "Ctrl-C stops it" in text else None
    return wait_for(up, what="the hub serving")


@example("server-cli: --help")
def cli_help(ref: Ref) -> None:
    result = ferry("hub", "--help", env=ref.env)  # vserver --help
    assert result.returncode == 0
    for verb in VERBS:
        assert re.search(rf"^    {verb} ", result.stdout, re.M), verb


@example("server-cli: quick start (new, start --attach, stop)")
def cli_quick_start(ref: Ref) -> None:
    env = no_root_password(ref.env)
    made = ferry("hub", "new", "--name", "quick", "--user", "--port", "0", "--no-input",
                 env=env)  # vserver new: on no terminal, flags instead of the menu
    assert made.returncode == 0, made.stderr
    proc, out = attached(ref, "--name", "quick", "--user", env=env)
    try:
        text = served(proc, out)
        # Differs: no root/root; a random root password, shown once
        password = re.search(r"root password: (\S+)", text).group(1)  # type: ignore[union-attr]
        url = re.search(r"url:\s+(http://\S+)/api/v1", text).group(1)  # type: ignore[union-attr]
        from hub import Session

        assert Session(url, username="root", password=password).user["username"] == "root"
        with pytest.raises(ApiError):
            Session(url, username="root", password="root").login()
        assert "stopped" in stop(proc, "--name", "quick", "--user", env=env)
    finally:
        proc.kill()


@example("server-cli: available commands")
def cli_commands(ref: Ref) -> None:
    this = ("--name", ref.hub.name, "--user", "--config", str(ref.hub.config_file))
    files = ferry("hub", "files", *this, env=ref.env)
    assert str(ref.hub.config_file) in files.stdout and "ref.log" in files.stdout
    listed = ferry("hub", "list", env=ref.env)
    assert listed.returncode == 0, listed.stderr
    version = ferry("hub", "version", *this, env=ref.env)
    assert "protocol ferry-v1" in version.stdout, version.stdout
    shell_ = ferry("hub", "shell", *this, "-c", "print(len(db.Site.get()))", env=ref.env)
    assert shell_.returncode == 0 and shell_.stdout.strip().isdigit(), shell_.stderr


@example("server-cli: configuration file structure (the example file)")
def cli_config_file(ref: Ref) -> None:
    printed = (DATA / "server-config.yaml").read_text()
    # addresses adapted: this machine only, any free port
    adapted = printed.replace("ip: 0.0.0.0", "ip: 127.0.0.1").replace("port: 5000", "port: 0")
    test = ref.tmp / "test.yaml"
    test.write_text(adapted)
    refused = ferry("hub", "start", "--config", str(test), "--user", env=ref.env)
    # Differs: the example's 17-character jwt_secret_key is refused, saying why and how
    assert refused.returncode == 2
    assert "at key 'environments.test.jwt_secret_key'" in refused.stderr
    assert "at least 32" in refused.stderr and "secrets.token_hex(32)" in refused.stderr
    test.write_text(adapted.replace("super-secret-key!", "a-long-secret-key-" + "k" * 20))
    proc, out = attached(ref, "--config", str(test), "--user")
    try:
        text = served(proc, out)
        # the example loads; vpn_server is accepted and said to be unused
        assert "warning:" in text and "'environments.test.vpn_server' is accepted and not " \
            "used" in text
        assert "hub 'test' running" in text  # named after its file
        log = Path(ref.env["XDG_STATE_HOME"]) / "ferry" / "log" / "hub" / "test.log"
        assert log.exists()  # logging.file: test.log
        data = Path(ref.env["XDG_DATA_HOME"]) / "ferry" / "hub" / "test"
        assert (data / "test.sqlite").exists()  # uri: sqlite:///test.sqlite
        stop(proc, "--config", str(test), "--user", env=ref.env)
    finally:
        proc.kill()


@example("server-cli: configuration wizard (new --user)")
def cli_wizard(ref: Ref) -> None:
    made = ferry("hub", "new", "--user", "--name", "wizard", "--no-input", env=ref.env)
    assert made.returncode == 0, made.stderr
    # the Ubuntu user folder of the table, with ferry for vantage6 and hub for server
    path = Path(ref.env["XDG_CONFIG_HOME"]) / "ferry" / "hub" / "wizard.yaml"
    assert path.exists() and str(path) in made.stdout
    section = yaml.safe_load(path.read_text())["application"]
    assert HubConfig is not None and configfile.load(path, HubConfig).config.port == \
        section["port"]


@example("server-cli: update configuration (files)")
def cli_files(ref: Ref) -> None:
    files = ferry("hub", "files", "--user", "--name", ref.hub.name, "--config",
                  str(ref.hub.config_file), env=ref.env)
    assert files.returncode == 0 and str(ref.hub.config_file) in files.stdout


@example("server-cli: batch import")
def cli_batch_import(ref: Ref) -> None:
    made = ferry("hub", "new", "--name", "batch", "--user", "--port", "0", "--no-input",
                 env=ref.env)
    assert made.returncode == 0, made.stderr
    # vserver import /path/to/file.yaml, with the example file as printed, on a hub that
    # was never started
    result = ferry("hub", "import", str(DATA / "batch-import.yaml"), "--name", "batch",
                   "--user", env=ref.env)
    assert result.returncode == 0, result.stderr
    assert "this hub had never started: made user root" in result.stdout
    assert "created 23, updated 0" in result.stdout
    database = Path(ref.env["XDG_DATA_HOME"]) / "ferry" / "hub" / "batch" / "hub.sqlite"
    users = dict(db_query(database, "SELECT username, role FROM users"))
    assert {"admin", "frank@iknl.nl", "melle@iknl.nl", "stan"} <= set(users)
    # Differs: imported users are not superusers (the warning): the least-privilege role
    assert {users[u] for u in ("admin", "frank@iknl.nl", "stan")} == {"viewer"}
    again = ferry("hub", "import", str(DATA / "batch-import.yaml"), "--name", "batch",
                  "--user", env=ref.env)
    assert "nothing changed" in again.stdout


@example("server-cli: logging (files, attach)")
def cli_logging(ref: Ref) -> None:
    this = ("--name", ref.hub.name, "--user", "--config", str(ref.hub.config_file))
    files = ferry("hub", "files", *this, env=ref.env)
    log = next(line.split()[-1] for line in files.stdout.splitlines() if "log" in line.lower()
               and line.strip().endswith(".log"))
    proc = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "attach", *this],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ref.env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the log's last lines come first
        assert first.strip(), first
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert Path(log).exists()


# ---------------------------------------------------------------- server-shell-v4.rst
# (its code blocks, whose lines the file runs together, as server-cli.rst lays them out)

def refused(ref: Ref, printed: str, **adapt: str) -> str:
    """Run printed shell code that Ferry refuses on purpose; what the refusal says."""
    with pytest.raises(Exception) as info:
        shell(ref, printed, **adapt)
    return str(info.value)


NUMERIC = "ids are strings in Ferry, not numbers"


@example("server-shell: start the shell")
def shell_start(ref: Ref) -> None:
    # v6 server shell [options]
    result = ferry("hub", "shell", "--name", ref.hub.name, "--user", "--config",
                   str(ref.hub.config_file), input="print(db.Organization)\n", env=ref.env)
    assert result.returncode == 0, result.stderr
    assert "Ferry hub shell: the root user" in result.stderr + result.stdout
    assert "<db.Organization>" in result.stdout


@example("server-shell: help()")
def shell_help(ref: Ref) -> None:
    out = shell(ref, "db.Organization.help()")
    assert "db.Organization" in out and "fields:" in out and "relations:" in out


@example("server-shell: create an organization")
def shell_organization_create(ref: Ref) -> None:
    shell(ref, """
        # create new organiztion
        organization = db.Organization(
            name="IKNL",
            domain="iknl.nl",
            address1="Zernikestraat 29",
            address2="Eindhoven",
            zipcode="5612HZ",
            country="Netherlands"
        )

        # store organization in the database
        organization.save()
    """)
    iknl = ref.session.find_one("Organization where name=IKNL")
    assert iknl is not None and (iknl["zipcode"], iknl["country"]) == ("5612HZ", "Netherlands")


@example("server-shell: retrieve organizations")
def shell_organization_get(ref: Ref) -> None:
    ref.organization()
    out = shell(ref, """
        # get all organizations in the database
        organizations = db.Organization.get()

        # get organization by its name
        organization = db.Organization.get_by_name("IKNL")
        print(len(organizations), organization.name)
    """)
    assert out.split()[1] == "IKNL" and int(out.split()[0]) >= 2
    # Differs: ids are strings; get(1) says so and how to find one
    said = refused(ref, """
        # get organization by its unique id
        organization = db.Organization.get(1)
    """)
    assert NUMERIC in said and 'db.Organization.get_by_name("IKNL")' in said


@example("server-shell: an organization's records")
def shell_organization_relations(ref: Ref) -> None:
    ref.organization()
    out = shell(ref, """
        # retrieve organization from which we want to know more
        organization = db.Organization.get_by_name("IKNL")

        # get all collaborations in which the organization participates
        collaborations = organization.collaborations

        # get all users from the organization
        users = organization.users

        # get all created tasks (from all users)
        tasks = organization.created_tasks

        # get the runs of all these tasks
        runs = organization.runs

        # get all nodes of this organization (for each collaboration
        # an organization participates in, it needs a node)
        nodes = organization.nodes
        print(all(isinstance(x, list) for x in (collaborations, users, tasks, runs, nodes)))
    """)
    assert out.strip() == "True"


def some_user(ref: Ref) -> None:
    iknl = ref.organization()
    if ref.session.find_one("User where username=some-existing-username") is None:
        ref.session.create("User", {"username": "some-existing-username",
                                    "password": "a long password", "organization": iknl["id"]})


@example("server-shell: roles and rules")
def shell_roles_rules(ref: Ref) -> None:
    some_user(ref)
    out = shell(ref, """
        # display all available rules
        db.Rule.get()

        # display all available roles
        db.Role.get()

        # retrieve a certain rule from the DB
        rule = db.Rule.get_by_("node", Scope, Operation)

        # create a new role
        role = db.Role(name="role-name", rules=[rule])
        role.save()

        # or assign the rule directly to the user
        user = db.User.get_by_username("some-existing-username")
        user.rules.append(rule)
        user.save()
        print([r.name for r in db.Role.get_by_name("role-name").rules],
              [r.name for r in db.User.get_by_username("some-existing-username").rules])
    """, Scope='"organization"', Operation='"view"')  # the printed placeholders
    assert out.strip() == "['view node (organization)'] ['view node (organization)']"
    for printed in ("db.Rule.get(1)", "db.Role.get(3)", "db.Role.get(3).rules"):
        said = refused(ref, printed)
        assert NUMERIC in said, (printed, said)


@example("server-shell: create a user")
def shell_user_create(ref: Ref) -> None:
    ref.organization()
    shell(ref, """
        # first obtain the organization to which the new user belongs
        org = db.Organization.get_by_name("IKNL")

        # obtain role 3 to assign to the new user
        role_3 = db.Role.get(3)

        # create the new users, see section Roles and Rules on how to
        # deal with permissions
        new_user = db.User(
            username="root",
            password="super-secret",
            firstname="John",
            lastname="Doe",
            roles=[role_3],
            rules=[],
            organization=org
        )

        # store the user in the database
        new_user.save()
    """, **{"db.Role.get(3)": 'db.Role.get_by_name("researcher")',  # ids are strings
            'username="root"': 'username="john"'})  # root is the hub's own administrator
    john = ref.session.find_one("User where username=john")
    assert john is not None and john["firstname"] == "John"
    # Differs: a second "root" is refused (usernames are unique, and root exists)
    said = refused(ref, 'db.User(username="root", password="super-secret", '
                        'organization=db.Organization.get_by_name("IKNL")).save()')
    assert "root" in said and "409" in said


@example("server-shell: retrieve users")
def shell_user_get(ref: Ref) -> None:
    ref.organization()
    out = shell(ref, """
        # get all users
        db.User.get()

        # get user by username
        db.User.get_by_username("root")

        # get all users from the organization IKNL
        db.Organization.get_by_name("IKNL").users
        print(db.User.get_by_username("root").username)
    """)
    assert out.strip() == "root"
    assert NUMERIC in refused(ref, "db.User.get(1)")


@example("server-shell: modify a user")
def shell_user_modify(ref: Ref) -> None:
    some_user(ref)
    shell(ref, """
        user = db.User.get_by_username("some-existing-username")

        # update the firstname
        user.firstname = "Brandnew"

        # update the password; it is automatically hashed.
        user.password = "something-new"

        # store the updated user in the database
        user.save()
    """)
    from hub import Session

    them = Session(ref.hub.url, username="some-existing-username", password="something-new")
    assert them.user["firstname"] == "Brandnew"


@example("server-shell: create a collaboration")
def shell_collaboration_create(ref: Ref) -> None:
    ref.organization()
    printed = """
        # create a second organization to collaborate with
        other_organization = db.Organization(
            name="IKNL",
            domain="iknl.nl",
            address1="Zernikestraat 29",
            address2="Eindhoven",
            zipcode="5612HZ",
            country="Netherlands"
        )
        other_organization.save()

        # get organization we have created earlier
        iknl = db.Organization.get_by_name("IKNL")

        # create the collaboration
        collaboration = db.Collaboration(
            name="collaboration-name",
            encrypted=False,
            organizations=[iknl, other_organization]
        )

        # store the collaboration in the database
        collaboration.save()
    """
    # Differs: a second organization named IKNL is refused (names are unique)
    said = refused(ref, printed)
    assert "409" in said and "named 'IKNL' already exists" in said
    assert ref.session.find_one("Collaboration where name=collaboration-name") is None
    shell(ref, printed, **{'name="IKNL",': 'name="Other",',
                           'domain="iknl.nl",': 'domain="other.example",'})
    collab = ref.session.find_one("Collaboration where name=collaboration-name")
    assert collab is not None and len(collab["organizations"]) == 2 and not collab["encrypted"]


@example("server-shell: a collaboration's records")
def shell_collaboration_relations(ref: Ref) -> None:
    ref.collaboration()
    out = shell(ref, """
        # obtain a collaboration which we like to inspect
        collaboration = db.Collaboration.get(1)

        # get all nodes
        collaboration.nodes

        # get all tasks issued for this collaboration
        collaboration.tasks

        # get all organizations
        collaboration.organizations
        print(sorted(o.name for o in collaboration.organizations))
    """, **{"db.Collaboration.get(1)": 'db.Collaboration.get_by_name("collaboration-name")'})
    assert out.strip() == "['IKNL', 'Other']"
    assert NUMERIC in refused(ref, "db.Collaboration.get(1)")


NODE = """
    # we'll use a uuid as the API-key, but you can use anything as
    # API key
    from uuid import uuid4

    # nodes always belong to an organization *and* a collaboration,
    # this combination needs to be unique!
    iknl = db.Organization.get_by_name("IKNL")
    collab = iknl.collaborations[0]

    # generate and save
    api_key = str(uuid4())
    print(api_key)

    node = db.Node(
        name = f"IKNL Node - Collaboration {collab.name}",
        organization = iknl,
        collaboration = collab,
        api_key = api_key
    )

    # save the new node to the database
    node.save()
"""


def no_iknl_node(ref: Ref) -> None:
    """The organization and collaboration pair has one node: drop one an example made."""
    ref.collaboration()
    for node in ref.session.find('Node where name="IKNL Node - Collaboration '
                                 'collaboration-name"'):
        ref.session.delete_one("Node", node["id"])


@example("server-shell: create a node")
def shell_node_create(ref: Ref) -> None:
    no_iknl_node(ref)
    out = shell(ref, NODE)
    api_key = out.splitlines()[0]
    assert f"api_key: {api_key}  (shown once; only its hash is stored)" in out
    status, enrolled = http("POST", f"{ref.hub.api}/agent/enroll", {
        "api_key": api_key, "machine_id": uuid.uuid4().hex, "code": "iknl-node"})
    assert status == 200, enrolled  # the key works; the hub keeps its hash only
    assert api_key not in repr(db_query(ref.hub.database, "SELECT * FROM api_keys"))


TASKS_AND_RUNS = """
    # obtain organization from which this task is posted
    iknl = db.Organization.get_by_name("IKNL")

    # obtain collaboration for which we want to create a task
    collaboration = db.Collaboration.get(1)

    # obtain the next job_id. Tasks sharing the same job_id
    # can share the temporary volumes at the nodes. Usually this
    # job_id is assigned through the API (as the user is not allowed
    # to do so). All tasks from a master-container share the
    # same job_id
    job_id = db.Task.next_job_id()

    task = db.Task(
        name="some-name",
        description="some human readable description",
        image="docker-registry.org/image-name",
        collaboration=collaboration,
        job_id=job_id,
        database="default",
        init_org=iknl,
    )
    task.save()

    # input the algorithm container (docker-registry.org/image-name)
    # expects
    input_ = {
    }

    import datetime

    # now create a Run model for each organization within the
    # collaboration. This could also be a subset
    for org in collaboration.organizations:
        res = db.Run(
            input=input_,
            organization=org,
            task=task,
            assigned_at=datetime.datetime.now(datetime.timezone.utc)
        )
        res.save()
"""
CHILD = """
    # get a task to which we want to create some
    # child tasks
    parent_task = db.Task.get(1)

    child_task = db.Task(
        name="some-name",
        description="some human readable description",
        image="docker-registry.org/image-name",
        collaboration=collaboration,
        job_id=parent_task.job_id,
        database="default",
        init_org=iknl,
        parent=parent_task
    )
    child_task.save()
"""
COLLAB_1 = {"db.Collaboration.get(1)": 'db.Collaboration.get_by_name("collaboration-name")'}


@example("server-shell: tasks and runs")
def shell_tasks_runs(ref: Ref) -> None:
    ref.collaboration()
    out = shell(ref, TASKS_AND_RUNS + "\n    print(task.id)", **COLLAB_1)
    assert "task 'some-name' is held (paused) until its first run" in out
    job = ref.session.get("Job", out.split()[-1])
    # the task is a docker job; saving its first run started it
    assert (job["kind"], job["status"], job["job_id"]) == ("docker", "waiting", job["id"])
    assert job["docker"]["image"] == "docker-registry.org/image-name"
    runs = ref.session.find(f"task WHERE job.id={job['id']}", attributes=["input"])
    assert len(runs) == 2 and {r["input"] for r in runs} == {"{}"}  # input_ as JSON


@example("server-shell: child tasks")
def shell_child_tasks(ref: Ref) -> None:
    ref.collaboration()
    out = shell(ref, TASKS_AND_RUNS + CHILD + "\n    print(child_task.job_id == job_id)",
                **COLLAB_1, **{"db.Task.get(1)": "db.Task.get(task.id)"})
    assert out.split()[-1] == "True"  # parent and child share the job_id
    assert NUMERIC in refused(ref, "db.Task.get(1)")


@example("server-shell: obtain runs")
def shell_runs(ref: Ref) -> None:
    ref.collaboration()
    shell(ref, TASKS_AND_RUNS, **COLLAB_1)
    out = shell(ref, """
        # obtain all Runs
        db.Run.get()

        # obtain only completed runs
        [run for run in db.Run.get() if run.complete]
        print(len(db.Run.get()), [run for run in db.Run.get() if run.complete])
    """)
    count, done = out.split(" ", 1)
    assert int(count) >= 2 and done.strip() == "[]"  # no node ran them: none complete
    assert NUMERIC in refused(ref, """
        # obtain run by its unique id
        db.Run.get(1)
    """)


@example("server-cli: shell (its tasks, runs and nodes)")
def cli_shell(ref: Ref) -> None:
    """server-cli.rst's copy of the shell page: ``initiator=`` for ``init_org=``, ``run``
    for ``res``, ``uuid1`` for ``uuid4``, a naive ``datetime.now()``."""
    ref.collaboration()
    printed = TASKS_AND_RUNS.replace("init_org=iknl", "initiator=iknl").replace(
        "res = db.Run(", "run = db.Run(").replace("res.save()", "run.save()").replace(
        "datetime.datetime.now(datetime.timezone.utc)", "datetime.datetime.now()")
    out = shell(ref, printed + "\n    print(task.initiator.name, len(task.runs))", **COLLAB_1)
    assert out.splitlines()[-1] == "IKNL 2"
    no_iknl_node(ref)
    out = shell(ref, NODE.replace("uuid4", "uuid1"))
    assert "(shown once; only its hash is stored)" in out


# ---------------------------------------------------------------- servers-database.rst
# (no code: its rules, run through `ferry servers` and Session(server=…) against the hub)

def servers(*args: str) -> tuple[int, str, str]:
    """``ferry servers …`` in this process (the user's database, under the test's home)."""
    from ferry.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["servers", *args])
    return code, out.getvalue(), err.getvalue()


def user_server(ref: Ref, name: str, url: str | None = None) -> None:
    code, _, err = servers("remove", name)  # what an earlier run of the example left
    code, _, err = servers("add", name, url or ref.hub.url)
    assert code == 0, err


@example("servers-database: identification (one name, any case)")
def servers_identification(ref: Ref) -> None:
    user_server(ref, "Studio")
    code, out, _ = servers("check", "STUDIO")  # used by its name, in any case
    assert code == 0 and "Running" in out, out
    code, _, err = servers("add", "studio", "http://127.0.0.1:9")
    assert code == 1 and "exists" in err, err  # unique whatever the case
    from hub import Session

    session = Session(server="studio", username="root", password=ROOT_PASSWORD)
    assert session.url == ref.hub.url and session.user["username"] == "root"


@example("servers-database: predefined and user defined servers")
def servers_predefined(ref: Ref) -> None:
    code, out, _ = servers("list")
    assert code == 0 and re.search(r"^local\s+predefined", out, re.M), out
    code, _, err = servers("remove", "local")
    assert code == 1 and "predefined" in err  # predefined servers cannot be deleted
    code, _, err = servers("add", "LOCAL", ref.hub.url)
    assert code == 1 and "predefined" in err  # nor their names taken
    user_server(ref, "mine")
    assert servers("remove", "mine")[0] == 0  # a user's own is removed


@example("servers-database: definition details (two services and their protocol)")
def servers_definition(ref: Ref) -> None:
    servers("remove", "sso")
    code, _, err = servers("add", "sso", ref.hub.url, "--auth-url", "https://sso.example")
    assert code == 0, err
    code, out, _ = servers("show", "sso")
    assert re.search(r"authentication:?\s+https://sso\.example\s+\(?ferry-v1", out), out
    assert re.search(rf"application:?\s+{re.escape(ref.hub.url)}\s+\(?ferry-v1", out), out


@example("servers-database: server status")
def servers_status(ref: Ref) -> None:
    from tests.proxy import ThreadedProxy

    relay = ThreadedProxy(int(ref.hub.url.rsplit(":", 1)[1]))
    port = relay.start()
    user_server(ref, "relayed", f"http://127.0.0.1:{port}")
    user_server(ref, "nowhere", f"http://127.0.0.1:{free_port()}")
    assert "Never reached" in servers("show", "relayed")[1]
    assert servers("check", "nowhere")[0] == 1
    assert "Never reached" in servers("show", "nowhere")[1]  # failures keep it so
    code, out, _ = servers("check", "relayed")
    assert code == 0 and "Running" in out
    relay.stop()  # under maintenance
    code, _, err = servers("check", "relayed")
    assert code == 1 and "status: Unavailable" in err and "maintenance" in err, err


@example("servers-database: server cache")
def servers_cache(ref: Ref) -> None:
    from servers import ServersDB

    user_server(ref, "cached")
    assert servers("check", "cached")[0] == 0
    db = ServersDB()
    assert db.cache_max_age == 24 * 3600  # typically 24 h
    fetched = db.get("cached").cache["version"]
    assert db.cached("cached", "version", lambda: pytest.fail("not from the cache")) == \
        fetched.value


@example("servers-database: creation (where the database is)")
def servers_location(ref: Ref) -> None:
    servers("list")
    # Linux: $HOME/.local/share/<the client's name>; Ferry's is ferry, in XDG_DATA_HOME
    path = Path(ref.env["XDG_DATA_HOME"]) / "ferry" / "servers.json"
    assert json.loads(path.read_text())["servers"][0]["name"] == "local"


@example("servers-database: upgrade")
def servers_upgrade(ref: Ref) -> None:
    from servers import SecretStore, ServersDB

    folder = ref.tmp / "upgrade"
    folder.mkdir(exist_ok=True)

    def db(predefined: list[dict[str, str]]) -> ServersDB:
        return ServersDB(folder / "servers.json", predefined=predefined,
                         secrets=SecretStore(folder / "secrets.json", backend=None))

    local = {"name": "local", "url": "http://127.0.0.1:7700"}
    db([local, {"name": "old", "url": "https://old.example"}]).add("Studio",
                                                                  "https://mine.example")
    new = db([local, {"name": "studio", "url": "https://studio.example"}])
    names = [(s.name, s.predefined) for s in new.list()]
    # removed predefined servers go; a new predefined name renames the user's server
    assert names == [("local", True), ("studio", True), ("Studio_user_defined", False)]
    assert "renamed 'Studio_user_defined'" in new.warnings[0]
    assert new.reserved() == ["old"]  # and a removed predefined name is never reused


# ---------------------------------------------------------------- the test

def _params() -> list[Any]:
    return [pytest.param(name, id=name, marks=[pytest.mark.skip(reason=f"lands with {lands}")]
                         if lands else [])
            for name, (_, lands) in EXAMPLES.items()]


@pytest.mark.parametrize("name", _params())
def test_example(ref: Ref, name: str) -> None:
    EXAMPLES[name][0](ref)
