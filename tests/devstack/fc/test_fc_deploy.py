"""`dev deploy` refuses what could not run, naming it; a failing function is retried by its trigger and logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.fc.spec import DeployError, load
from processor.packaging import PROJECT_PATHS, copy_project_path, write_zip
from tests.devstack.fc.fc_support import repo_env, small_function, trigger_log, write_s_yaml
from tests.pipeline_support import put_groups
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
ENV = repo_env("127.0.0.1:1", "t", "p", "l", "tl")


def test_the_repository_s_yaml_resolves_env_vars_and_config():
    functions = load(REPO / "s.yaml", ENV, "1234")
    assert [f.name for f in functions] == ["sls-kafka-processor", "sls-kafka-processor-alerts"]
    function = functions[0]
    assert (function.name, function.runtime, function.handler, function.timeout) == (
        "sls-kafka-processor", "python3.10", "index.handler", 120.0)
    assert function.initializer == "index.initialize"
    assert function.env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1"
    [trigger] = function.triggers
    assert (trigger.project, trigger.logstore, trigger.interval, trigger.max_retry) == ("p", "l", 60.0, 20)
    assert (trigger.log_project, trigger.log_logstore, trigger.enabled) == ("p", "tl", True)


def test_a_missing_variable_is_refused_naming_it_and_where():
    env = {k: v for k, v in ENV.items() if k != "KAFKA_TOPIC"}
    with pytest.raises(DeployError, match=r"environmentVariables\.KAFKA_TOPIC: \$\{env\(KAFKA_TOPIC\)\}: "
                                          r"environment variable KAFKA_TOPIC is not set"):
        load(REPO / "s.yaml", env, "1234")


def test_an_unknown_expression_or_var_is_refused(tmp_path):
    props = {"region": "${vars.nowhere}", "functionName": "f", "runtime": "python3.10", "code": ".",
             "handler": "index.handler"}
    with pytest.raises(DeployError, match=r"props\.region: \$\{vars\.nowhere\}: vars has no 'nowhere'"):
        load(write_s_yaml(tmp_path / "s.yaml", {"f": props}), {}, "1")


@pytest.mark.slow
def test_an_unknown_handler_is_refused_at_deploy(local_cloud, tmp_path):
    props = small_function(tmp_path / "f", "def handler(event, context):\n    return 'x'\n", handler="index.handlr")
    with pytest.raises(DeployError, match=r"handler index\.handlr cannot be loaded: AttributeError: module "
                                          r"'index' has no function 'handlr'"):
        local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"f": props}), {})
    assert "f" not in local_cloud.host.pools


@pytest.mark.slow
def test_a_zip_without_dependencies_is_refused_naming_the_missing_one(local_cloud, tmp_path, repo_s_yaml):
    tree = tmp_path / "tree"
    for name in PROJECT_PATHS:
        copy_project_path(REPO / name, tree / name)
    write_zip(tree, tmp_path / "bare.zip")
    with pytest.raises(DeployError, match=r"the code lacks the dependency '[a-z_.]+' \(build the zip with "
                                          r"`sls-kafka package`\)"):
        local_cloud.deploy(repo_s_yaml(code=tmp_path / "bare.zip"), ENV)


@pytest.mark.slow
def test_a_missing_runtime_interpreter_is_refused(local_cloud, tmp_path):
    props = small_function(tmp_path / "f", "def handler(e, c):\n    pass\n", runtime="python3.99")
    with pytest.raises(DeployError, match=r"runtime python3\.99 needs a Python 3\.99 interpreter"):
        local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"f": props}), {})


FAILING = "def handler(event, context):\n    raise RuntimeError('no Kafka today')\n"


def test_a_failing_function_is_retried_max_retry_times_and_the_failures_land_in_the_trigger_log(
        local_cloud, tmp_path, sls_client, sls_project):
    sls_client.create_logstore(sls_project, "src", ttl=1, shard_count=1)
    sls_client.create_logstore(sls_project, "trigger-log", ttl=1, shard_count=1)
    trigger = {"triggerName": "t", "triggerType": "log", "sourceArn": f"acs:log:cn-hangzhou:1:project/{sls_project}",
               "triggerConfig": {"enable": True, "sourceConfig": {"logstore": "src"},
                                 "jobConfig": {"triggerInterval": 3, "maxRetryTime": 2},
                                 "logConfig": {"project": sls_project, "logstore": "trigger-log"},
                                 "functionParameter": {"topic": "elsewhere"}}}
    props = small_function(tmp_path / "failing", FAILING, triggers=[trigger])
    local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"failing": props}), {})
    put_groups(sls_client, sls_project, "src", [[{"content": "{}"}]])

    log = wait_for(lambda: (r := trigger_log(sls_client, sls_project, "trigger-log")) and len(r) >= 3 and r, 15,
                   "three attempts in the trigger log")
    first_task = [r for r in log if r["taskId"] == log[0]["taskId"]]
    assert [r["attempt"] for r in first_task] == ["0", "1", "2"]
    assert all(r["status"] == "failed" and r["errorMessage"] == "no Kafka today" for r in first_task)
    assert all(r["errorType"] == "RuntimeError" for r in first_task)
    # The range is kept: the next interval tries it again, as a new task of the same job.
    later = wait_for(lambda: [r for r in trigger_log(sls_client, sls_project, "trigger-log")
                              if r["taskId"] != log[0]["taskId"]], 10, "the next interval's attempt")
    assert (later[0]["beginCursor"], later[0]["endCursor"]) == (log[0]["beginCursor"], log[0]["endCursor"])
    assert later[0]["jobName"] == log[0]["jobName"]


def test_a_trigger_on_a_missing_logstore_is_refused(local_cloud, tmp_path, sls_project):
    trigger = {"triggerName": "t", "triggerType": "log", "sourceArn": f"acs:log:cn-hangzhou:1:project/{sls_project}",
               "triggerConfig": {"sourceConfig": {"logstore": "nowhere"}, "jobConfig": {"triggerInterval": 3}}}
    props = small_function(tmp_path / "f", FAILING, triggers=[trigger])
    with pytest.raises(DeployError, match=rf"trigger t: sourceConfig.logstore {sls_project}/nowhere: "
                                          r"LogStoreNotExist"):
        local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"f": props}), {})
