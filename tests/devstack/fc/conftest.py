"""Fixtures of the local cloud: the FC package built once for python3.10, a `LocalCloud` per test, s.yaml files.

The repository's own s.yaml is deployed with the variables a user would export (`repo_s_yaml`), tuned for test
cadence through its `vars`, as a user would tune them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.fc.cloud import CloudConfig, LocalCloud
from processor.packaging import build_package
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def fc_code_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sls-kafka package`'s zip for python3.10 (about 15 s, once per session)."""
    return build_package(REPO, tmp_path_factory.mktemp("fc-package") / "fc-code.zip", "3.10").path


@pytest.fixture
def local_cloud(tmp_path: Path, sls_proxy_env: str) -> Iterator[LocalCloud]:
    config = CloudConfig.from_env(tmp_path / "cloud", os.environ, sls_endpoint=sls_proxy_env,
                                  access_key_id=SLS_ACCESS_KEY_ID, access_key_secret=SLS_ACCESS_KEY_SECRET)
    cloud = LocalCloud(config, async_backoff=0.2)
    yield cloud
    cloud.close()


@pytest.fixture
def repo_s_yaml(tmp_path: Path, fc_code_zip: Path) -> Callable[..., Path]:
    """The repository's s.yaml with `vars` (and environment variables) overridden, `code` the session's zip."""

    def make(code: Path = fc_code_zip, handler: str | None = None, environment: dict[str, str] | None = None,
             **variables: Any) -> Path:
        doc = yaml.safe_load((REPO / "s.yaml").read_text())
        # The processor only: the alert evaluator (s.yaml's other function) has tests of its own.
        doc["resources"] = {"sls-kafka-processor": doc["resources"]["sls-kafka-processor"]}
        doc["vars"].update(variables)
        props = next(iter(doc["resources"].values()))["props"]
        props["code"] = str(code)
        props["environmentVariables"].update(environment or {})
        if handler:
            props["handler"] = handler
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return make
