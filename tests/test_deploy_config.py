"""Build and deploy cannot disagree: `make deploy`, samconfig.toml and the template carry one Runtime,
Architecture and Tracing, and the layers ship no second boto3/botocore beside the runtime's."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from samcli.cli.types import CfnParameterOverridesType  # type: ignore[import-untyped]

from roomcast_local.template import load_template, read_template

ROOT = Path(__file__).resolve().parents[1]
SAMCONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))["default"]
TEMPLATE = load_template()
BUILT_FOR = ("Runtime", "Architecture", "Tracing")


def overrides(*tokens: str) -> dict[str, str]:
    """Parameter overrides as `sam` itself parses them."""
    parsed: dict[str, str] = CfnParameterOverridesType().convert(tokens, None, None)
    return parsed


def sam_commands(*variables: str, environment: dict[str, str] | None = None) -> dict[str, list[str]]:
    """What `make deploy` runs (make -n), by sam subcommand: its words after `sam build` / `sam deploy`."""
    printed = subprocess.run(  # noqa: S603 - make on this repository, printing only (-n)
        ["make", "-n", "deploy", *variables],  # noqa: S607 - make from PATH, as a developer runs it
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=environment or os.environ.copy(),
    ).stdout.replace("\\\n", " ")
    return {
        verb: shlex.split(line)
        for line in printed.splitlines()
        for verb in ("build", "deploy")
        if f"bin/sam {verb} " in line
    }


def parameters_of(words: list[str]) -> dict[str, str]:
    tokens = words[words.index("--parameter-overrides") + 1 :]
    return overrides(*[token for token in tokens if "=" in token])


def test_samconfig_builds_and_deploys_with_the_templates_defaults() -> None:
    build = overrides(SAMCONFIG["build"]["parameters"]["parameter_overrides"])
    deploy = overrides(SAMCONFIG["deploy"]["parameters"]["parameter_overrides"])
    defaults = {name: TEMPLATE["Parameters"][name]["Default"] for name in BUILT_FOR}
    assert {name: build[name] for name in BUILT_FOR} == defaults
    assert {name: deploy[name] for name in BUILT_FOR} == defaults


def test_make_deploy_builds_and_deploys_with_the_same_values() -> None:
    commands = sam_commands("ALLOWED_ORIGINS=https://crm.example.com")
    build, deploy = parameters_of(commands["build"]), parameters_of(commands["deploy"])
    assert {name: build[name] for name in BUILT_FOR} == {name: deploy[name] for name in BUILT_FOR}
    assert build == overrides(SAMCONFIG["build"]["parameters"]["parameter_overrides"])
    assert (
        commands["deploy"][commands["deploy"].index("--stack-name") + 1]
        == SAMCONFIG["global"]["parameters"]["stack_name"]
    )


def test_a_chosen_runtime_reaches_both_build_and_deploy() -> None:
    commands = sam_commands("RUNTIME=python3.12", "ARCHITECTURE=x86_64", "TRACING=Active")
    chosen = {"Runtime": "python3.12", "Architecture": "x86_64", "Tracing": "Active"}
    assert parameters_of(commands["build"]) == chosen
    assert parameters_of(commands["deploy"]) == chosen
    for name, value in chosen.items():
        assert value in TEMPLATE["Parameters"][name]["AllowedValues"]


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_the_build_ships_bytecode_compiled_by_the_runtimes_own_python(runtime: str) -> None:
    """Lambda's code directories are read-only: what ships without .pyc is compiled by every cold start
    (decision 0067). The .pyc must be the runtime's version, and used whatever the zip's timestamps."""
    words = sam_commands(f"RUNTIME={runtime}")["build"]
    compiling = words[words.index("-m") - 1 :]
    assert compiling[0].endswith(f"/{runtime}")
    assert compiling[1:3] == ["-m", "compileall"]
    assert compiling[compiling.index("--invalidation-mode") + 1] == "unchecked-hash"
    assert compiling[-1] == ".aws-sam/build"


def test_deploy_passes_only_what_the_user_set_so_updates_keep_the_rest() -> None:
    # sam deploy sends UsePreviousValue for a parameter it is not given: an update without
    # JWT_SECRET_ARN keeps the secret the stack was created with.
    first = parameters_of(
        sam_commands(
            "ALLOWED_ORIGINS=https://a.example,https://b.example",
            "JWT_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:crm/jwt-Ab12Cd",
            "JWT_SECRET_KMS_KEY_ARN=arn:aws:kms:eu-west-1:123456789012:key/1a2b",
        )["deploy"]
    )
    assert first["AllowedOrigins"] == "https://a.example,https://b.example"
    assert first["JwtSecretArn"].endswith("crm/jwt-Ab12Cd")
    assert first["JwtSecretKmsKeyArn"].endswith("key/1a2b")
    update = parameters_of(sam_commands()["deploy"])
    assert set(update) == set(BUILT_FOR)
    assert set(first) <= set(TEMPLATE["Parameters"])


def test_deploy_goes_to_the_users_region_not_the_tests_fake_one() -> None:
    clean = {key: value for key, value in os.environ.items() if key not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    assert sam_commands(environment=clean)["deploy"][:3] == ["env", "-u", "AWS_DEFAULT_REGION"]
    chosen = sam_commands(environment={**clean, "AWS_REGION": "eu-west-1"})["deploy"]
    assert chosen[0] == "AWS_DEFAULT_REGION=eu-west-1"


def requirements(path: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def test_layers_ship_no_second_sdk_beside_the_runtimes_or_a_matched_pair() -> None:
    dependencies = requirements("layer/requirements.txt")
    # Powertools' tracer extra pulls in aws-xray-sdk and with it the newest botocore (30 MB).
    assert not [name for name in dependencies if "[" in name or name in ("boto3", "botocore", "aws-xray-sdk")]
    tracing, dev = requirements("layer-tracing/requirements.txt"), requirements("requirements-dev.txt")
    assert {name: tracing[name] for name in ("boto3", "botocore")} == {
        name: dev[name] for name in ("boto3", "botocore")
    }


def test_the_interpreter_finder_skips_a_broken_shim(tmp_path: Path) -> None:
    runtime = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    shims = tmp_path / "shims"
    shims.mkdir()
    broken = shims / runtime
    broken.write_text("#!/bin/sh\necho 'pyenv: version not selected' >&2\nexit 127\n")
    broken.chmod(0o755)
    environment: dict[str, Any] = {**os.environ, "PATH": f"{shims}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    found = subprocess.run(  # noqa: S603 - the repository's own script
        [ROOT / "tools/lambda-python", runtime], capture_output=True, text=True, check=True, env=environment
    ).stdout.strip()
    assert found != str(shims)
    version = subprocess.run(  # noqa: S603 - the interpreter the script found
        [Path(found) / runtime, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.strip() == str(sys.version_info[:2])


@pytest.mark.parametrize("runtime", ["python3", "3.13", "nodejs22.x"])
def test_the_interpreter_finder_refuses_what_is_not_a_python_runtime(runtime: str) -> None:
    result = subprocess.run(  # noqa: S603 - the repository's own script
        [ROOT / "tools/lambda-python", runtime], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "not a pythonX.Y" in result.stderr


def test_every_sam_command_expands_the_templates_loops_and_deploys_them_with_the_capability_they_need() -> None:
    raw_transforms = read_template()["Transform"]
    assert "AWS::LanguageExtensions" in raw_transforms
    assert SAMCONFIG["global"]["parameters"]["language_extensions"] is True
    assert "CAPABILITY_AUTO_EXPAND" in SAMCONFIG["deploy"]["parameters"]["capabilities"].split()
