"""The examples of server-shell-v4.rst (docs/REFERENCE.md says what each shows): its code
blocks, whose lines the file runs together, laid out as server-cli.rst lays them out."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import db_query, ferry, http
from tests.reference.conftest import Ref
from tests.reference.examples import example, shell


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
