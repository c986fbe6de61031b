"""Jenkins outputs: Jenkinsfiles and Job DSL scripts parse with the Groovy compiler, have the declarative
structure the image jobs need, keep configuration strings literal, and run the same homec commands a
laptop runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from homec.config.project import load_project
from homec.render import targets_of
from homec.render.jenkins import homec_extras
from tests.conftest import copy_example, run_homec
from tests.support.hostile import HOSTILE, write_hostile_project
from tests.support.validators import compile_groovy, format_problems, groovy_call_trees, require_tool

GOLDEN_INPUT = Path(__file__).parent / "golden" / "full" / "input"
STAGES = ["Checkout", "Install homec", "Check", "Resolve tag", "Build", "Push"]
BENTOML_PARAMETERS = ["APP_NAME", "EXPERIMENT_ID", "RUN_ID", "STORAGE_ROOT", "BENTOML_IMAGE_REPOSITORY"]
FASTAPI_PARAMETERS = ["APP_NAME", "FASTAPI_IMAGE_REPOSITORY"]
Node = dict[str, Any]


# --- rendering and the Groovy call trees ----------------------------------------------------------


def render(root: Path) -> Path:
    code, _, err = run_homec("-C", root, "render")
    assert code == 0, err
    return root / "rendered"


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Rendered copies of the golden input, the example repository and the hostile project, and a copy of
    the golden input whose iris app pins a registered version with the run it came from."""
    base = tmp_path_factory.mktemp("jenkins")
    golden = base / "golden"
    shutil.copytree(GOLDEN_INPUT, golden)
    version_pin = base / "version-pin"
    shutil.copytree(GOLDEN_INPUT, version_pin)
    apps = version_pin / "apps.yaml"
    pinned_run = '      experiment_id: "1"\n'
    assert pinned_run in apps.read_text()
    apps.write_text(
        apps.read_text().replace(
            pinned_run, f"      registered_name: iris-classifier\n      version: 3\n{pinned_run}"
        )
    )
    roots = {
        "golden": golden,
        "example": copy_example(base / "example"),
        "hostile": write_hostile_project(base / "hostile"),
        "version-pin": version_pin,
    }
    for root in roots.values():
        render(root)
    return roots


def groovy_files(root: Path) -> list[Path]:
    return sorted((root / "rendered").glob("*/jenkins/*.Jenkinsfile")) + sorted(
        (root / "rendered").glob("*/jenkins/*.groovy")
    )


@pytest.fixture(scope="module")
def trees(projects: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Call trees of every rendered Groovy file, keyed by path, from one JVM."""
    require_tool("groovy")
    paths = [path for root in projects.values() for path in groovy_files(root)]
    return groovy_call_trees(paths)


def tree_of(trees: dict[str, dict[str, Any]], path: Path) -> list[Node]:
    result = trees[str(path)]
    assert result["ok"], result["errors"]
    statements: list[Node] = result["statements"]
    return statements


def calls(nodes: list[Node], name: str) -> list[Node]:
    return [node for node in nodes if node.get("call") == name]


def one_call(nodes: list[Node], name: str) -> Node:
    found = calls(nodes, name)
    assert len(found) == 1, f"expected one {name}(...), found {len(found)}"
    return found[0]


def body(node: Node) -> list[Node]:
    """Return the statements of the closure passed to a call such as ``stage('x') { ... }``."""
    closures = [argument for argument in node["args"] if "closure" in argument]
    assert closures, f"{node['call']}(...) has no closure"
    statements: list[Node] = closures[-1]["closure"]
    return statements


def const(node: Node) -> Any:
    assert "const" in node, f"expected a constant, found {node}"
    return node["const"]


def walk(nodes: list[Node]) -> Iterator[Node]:
    """Yield every node below ``nodes``, depth first."""
    for node in nodes:
        yield node
        children: list[Node] = []
        for key in ("args", "list"):
            children.extend(child for child in node.get(key) or [] if isinstance(child, dict))
        for key in ("named", "map"):
            children.extend(child for child in (node.get(key) or {}).values() if isinstance(child, dict))
        for key in ("receiver", "object", "value", "assign"):
            if isinstance(node.get(key), dict):
                children.append(node[key])
        if "closure" in node:
            children.extend(node["closure"])
        yield from walk(children)


def pipeline(trees: dict[str, dict[str, Any]], path: Path) -> list[Node]:
    return body(one_call(tree_of(trees, path), "pipeline"))


def parameters(pipeline_body: list[Node]) -> list[tuple[str, str, str]]:
    """Return (name, default, description) of each string parameter, in order."""
    declared = body(one_call(pipeline_body, "parameters"))
    assert all(node["call"] == "string" for node in declared)
    return [
        (
            const(node["named"]["name"]),
            const(node["named"]["defaultValue"]),
            const(node["named"]["description"]),
        )
        for node in declared
    ]


def environment(pipeline_body: list[Node]) -> dict[str, str]:
    block = body(one_call(pipeline_body, "environment"))
    return {node["assign"]["var"]: const(node["value"]) for node in block}


def stages(pipeline_body: list[Node]) -> dict[str, list[Node]]:
    """Return each stage's steps, keyed by stage name, in order."""
    found: dict[str, list[Node]] = {}
    for stage in calls(body(one_call(pipeline_body, "stages")), "stage"):
        found[const(stage["args"][0])] = body(one_call(body(stage), "steps"))
    return found


def shell_scripts(steps: list[Node]) -> list[str]:
    """Return the scripts of every sh step below ``steps``, including sh(script: ...) calls."""
    scripts: list[str] = []
    for node in walk(steps):
        if node.get("call") != "sh":
            continue
        if node["args"]:
            scripts.append(const(node["args"][0]))
        else:
            scripts.append(const(node["named"]["script"]))
    return scripts


def credential_bindings(steps: list[Node]) -> list[Node]:
    """Return the binding calls inside every withCredentials([...]) below ``steps``."""
    bindings: list[Node] = []
    for node in walk(steps):
        if node.get("call") == "withCredentials":
            bindings.extend(node["args"][0]["list"])
    return bindings


def deployment_image(root: Path, env_name: str, target: str) -> str:
    document = yaml.safe_load((root / f"rendered/{env_name}/apps/{target}/deployment.yaml").read_text())
    image: str = document["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def jenkinsfile(root: Path, env_name: str, target: str) -> Path:
    return root / f"rendered/{env_name}/jenkins/{target}.Jenkinsfile"


# --- syntax -----------------------------------------------------------------------------------------


def test_groovy_compiler_parses_every_file(projects: dict[str, Path]) -> None:
    require_tool("groovy")
    paths = [path for root in projects.values() for path in groovy_files(root)]

    problems = compile_groovy(paths)

    assert len(paths) == 23, paths
    assert problems == [], format_problems(problems)


def test_no_interpolated_strings_anywhere(trees: dict[str, dict[str, Any]]) -> None:
    for path, result in trees.items():
        gstrings = [node["gstring"] for node in walk(result["statements"]) if "gstring" in node]

        assert gstrings == [], f"{path} contains Groovy string interpolation"


# --- declarative structure ----------------------------------------------------------------------------


def test_bentoml_parameters_and_defaults(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    declared = parameters(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-bentoml")))

    assert [name for name, _, _ in declared] == BENTOML_PARAMETERS
    assert {name: default for name, default, _ in declared} == {
        "APP_NAME": "iris",
        "EXPERIMENT_ID": "1",
        "RUN_ID": "0123456789abcdef0123456789abcdef",
        "STORAGE_ROOT": "gs://home-mlops-storage",
        "BENTOML_IMAGE_REPOSITORY": "docker.io/example/home-mlops-bentoml",
    }
    assert all(description for _, _, description in declared)


def test_fastapi_parameters_and_defaults(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    cluster = parameters(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "wine-fastapi")))
    localhost = parameters(pipeline(trees, jenkinsfile(projects["golden"], "localhost", "iris-fastapi")))

    assert [(name, default) for name, default, _ in cluster] == [
        ("APP_NAME", "wine"),
        ("FASTAPI_IMAGE_REPOSITORY", "docker.io/example/home-mlops-fastapi"),
    ]
    assert [(name, default) for name, default, _ in localhost] == [
        ("APP_NAME", "iris"),
        ("FASTAPI_IMAGE_REPOSITORY", "127.0.0.1:5000/homec-fastapi"),
    ]


def test_alias_model_leaves_run_parameters_empty(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    declared = parameters(pipeline(trees, jenkinsfile(projects["example"], "localhost", "iris-bentoml")))
    defaults = {name: default for name, default, _ in declared}

    assert defaults["EXPERIMENT_ID"] == ""
    assert defaults["RUN_ID"] == ""
    assert defaults["STORAGE_ROOT"] == ""


def test_every_jenkinsfile_has_the_stages(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    for root in projects.values():
        for path in sorted((root / "rendered").glob("*/jenkins/*.Jenkinsfile")):
            found = stages(pipeline(trees, path))

            assert list(found) == STAGES, path
            assert one_call(found["Checkout"], "checkout")["args"] == [{"var": "scm"}], path


def test_stages_run_homec_commands(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    found = stages(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-bentoml")))
    selection = (
        '--env "$HOMEC_ENV" --flavor "$HOMEC_FLAVOR" --experiment-id "$EXPERIMENT_ID" --run-id "$RUN_ID"'
    )
    homec = '"$HOMEC_VENV/bin/homec"'

    assert shell_scripts(found["Check"]) == [f'{homec} check --env "$HOMEC_ENV"']
    assert shell_scripts(found["Resolve tag"]) == [f'{homec} image-tag {selection} -- "$APP_NAME"']
    assert shell_scripts(found["Build"]) == [
        f'{homec} build {selection} --storage-root "$STORAGE_ROOT" '
        '--image-repository "$BENTOML_IMAGE_REPOSITORY" -- "$APP_NAME"'
    ]
    assert shell_scripts(found["Push"]) == [
        f'{homec} push {selection} --image-repository "$BENTOML_IMAGE_REPOSITORY" -- "$APP_NAME"'
    ]
    install = shell_scripts(found["Install homec"])
    assert len(install) == 1
    assert '"$HOMEC_VENV/bin/pip" install' in install[0]


def test_fastapi_stages_take_no_model_options(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    found = stages(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-fastapi")))
    scripts = [script for name in ("Resolve tag", "Build", "Push") for script in shell_scripts(found[name])]

    assert len(scripts) == 3
    for script in scripts:
        assert "--run-id" not in script
        assert "--storage-root" not in script
        assert script.endswith('-- "$APP_NAME"')


def test_install_script_is_valid_shell(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    for project in ("golden", "hostile"):
        root = projects[project]
        for path in sorted((root / "rendered").glob("*/jenkins/*.Jenkinsfile")):
            (install,) = shell_scripts(stages(pipeline(trees, path))["Install homec"])

            result = subprocess.run(["sh", "-n", "-c", install], capture_output=True, text=True)

            assert result.returncode == 0, (path, result.stderr)


def test_install_extras_follow_artifact_root(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    root = projects["golden"]
    bentoml = pipeline(trees, jenkinsfile(root, "cluster", "iris-bentoml"))
    fastapi = pipeline(trees, jenkinsfile(root, "cluster", "iris-fastapi"))
    (install,) = shell_scripts(stages(bentoml)["Install homec"])

    assert environment(bentoml)["HOMEC_EXTRAS"] == "ml,gcs"
    assert environment(fastapi)["HOMEC_EXTRAS"] == "ml"
    assert "HOMEC_REQUIREMENT" not in environment(bentoml)
    assert '"$HOMEC_VENV/bin/pip" install --quiet ".[$HOMEC_EXTRAS]"' in install
    assert '"$HOMEC_VENV/bin/pip" install --quiet "homec[$HOMEC_EXTRAS]==$HOMEC_VERSION"' in install
    assert "HOMEC_REQUIREMENT" not in install


@pytest.mark.parametrize(
    ("artifact_root", "extras"), [("s3://bucket/mlflow", "ml,s3"), ("/nas/mlflow", "ml")]
)
def test_install_extras_for_other_roots(tmp_path: Path, artifact_root: str, extras: str) -> None:
    root = tmp_path / "project"
    shutil.copytree(GOLDEN_INPUT, root)
    cluster = root / "environments/cluster.yaml"
    cluster.write_text(cluster.read_text().replace("gs://home-mlops-storage", artifact_root))
    project = load_project(root)

    extras_by_target = {target.name: homec_extras(target) for target in targets_of(project, "cluster")}

    assert extras_by_target["iris-bentoml"] == extras
    assert extras_by_target["iris-fastapi"] == "ml"


def test_install_uses_homec_requirement(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    root = projects["hostile"]
    for target in ("iris-bentoml", "iris-fastapi"):
        pipeline_body = pipeline(trees, jenkinsfile(root, "hostile", target))
        (install,) = shell_scripts(stages(pipeline_body)["Install homec"])
        pip_lines = [line.strip() for line in install.splitlines() if "/bin/pip" in line]

        assert environment(pipeline_body)["HOMEC_REQUIREMENT"] == HOSTILE["homec_requirement"]
        assert pip_lines == ['"$HOMEC_VENV/bin/pip" install --quiet "$HOMEC_REQUIREMENT"']


def test_install_stage_installs_requirement(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Run the Install homec stage with python3 -m venv and pip replaced by stubs that record their arguments."""
    root = projects["hostile"]
    pipeline_body = pipeline(trees, jenkinsfile(root, "hostile", "iris-bentoml"))
    (install,) = shell_scripts(stages(pipeline_body)["Install homec"])
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    recorded = tmp_path / "pip-arguments"
    stubs = {
        "python": "#!/bin/sh\nexit 0\n",
        "pip": f'#!/bin/sh\nfor argument in "$@"; do printf "%s\\0" "$argument"; done > {recorded}\n',
        "homec": "#!/bin/sh\necho homec 0\n",
    }
    for name, text in stubs.items():
        (venv_bin / name).write_text(text, encoding="utf-8")
        (venv_bin / name).chmod(0o755)
    marker = tmp_path / "pwned"
    env = stage_environment(pipeline_body, tmp_path / "venv", HOMEC_REQUIREMENT=f"homec $(touch {marker})")

    result = run_stage(install, tmp_path, env)

    assert result.returncode == 0, result.stderr
    assert recorded.read_bytes().split(b"\0")[:-1] == [
        b"install",
        b"--quiet",
        f"homec $(touch {marker})".encode(),
    ]
    assert not marker.exists()


def test_version_pin_defaults_give_rendered_tag(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]], stage_shell: Path
) -> None:
    root = projects["version-pin"]
    pipeline_body = pipeline(trees, jenkinsfile(root, "cluster", "iris-bentoml"))
    defaults = {name: default for name, default, _ in parameters(pipeline_body)}
    env = stage_environment(pipeline_body, stage_shell)

    tag = run_stage(shell_scripts(stages(pipeline_body)["Resolve tag"])[0], root, env)
    code, direct, direct_err = run_homec(
        "-C", root, "image-tag", "iris", "--flavor", "bentoml", "--env", "cluster",
        "--experiment-id", defaults["EXPERIMENT_ID"], "--run-id", defaults["RUN_ID"],
    )  # fmt: skip

    assert defaults["EXPERIMENT_ID"] == "1"
    assert defaults["RUN_ID"] == "0123456789abcdef0123456789abcdef"
    assert tag.returncode == 0, tag.stderr
    assert deployment_image(root, "cluster", "iris-bentoml").endswith(":" + tag.stdout.strip())
    assert tag.stdout.strip() == env["HOMEC_RENDERED_IMAGE_TAG"]
    assert tag.stderr == ""
    assert code == 0, direct_err
    assert direct.strip() == tag.stdout.strip()
    assert direct_err == ""


def test_rendered_tag_matches_deployment(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    root = projects["golden"]
    for env_name, target in [
        ("cluster", "iris-bentoml"),
        ("cluster", "iris-fastapi"),
        ("localhost", "wine-fastapi"),
    ]:
        values = environment(pipeline(trees, jenkinsfile(root, env_name, target)))
        image = deployment_image(root, env_name, target)

        assert image.endswith(":" + values["HOMEC_RENDERED_IMAGE_TAG"]), (target, image)
        assert values["HOMEC_ENV"] == env_name
        assert values["HOMEC_FLAVOR"] == target.rsplit("-", 1)[1]


def test_environment_turns_telemetry_off(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    values = environment(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-bentoml")))

    assert values["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert values["DO_NOT_TRACK"] == "true"
    assert values["BENTOML_DO_NOT_TRACK"] == "true"


def test_push_binds_registry_credentials_by_id(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    found = stages(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-fastapi")))

    (binding,) = credential_bindings(found["Push"])

    assert binding["call"] == "usernamePassword"
    assert {key: const(value) for key, value in binding["named"].items()} == {
        "credentialsId": "dockerhub",
        "usernameVariable": "HOMEC_REGISTRY_USERNAME",
        "passwordVariable": "HOMEC_REGISTRY_PASSWORD",
    }
    assert credential_bindings(found["Build"]) == []


def test_bentoml_build_binds_storage_credentials(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    found = stages(pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-bentoml")))

    (binding,) = credential_bindings(found["Build"])

    assert binding["call"] == "file"
    assert {key: const(value) for key, value in binding["named"].items()} == {
        "credentialsId": "gcs-home-mlops",
        "variable": "GOOGLE_APPLICATION_CREDENTIALS",
    }


def test_credential_ids_only_in_bindings(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    # The credential ids of the golden environments; localhost uses the default id "registry".
    ids = {"dockerhub", "gcs-home-mlops", "registry"}
    for path in sorted((projects["golden"] / "rendered").glob("*/jenkins/*.Jenkinsfile")):
        statements = tree_of(trees, path)
        bound = [
            const(binding["named"]["credentialsId"])
            for node in walk(statements)
            if node.get("call") == "withCredentials"
            for binding in node["args"][0]["list"]
        ]
        mentioned = [node["const"] for node in walk(statements) if node.get("const") in ids]

        assert sorted(mentioned) == sorted(bound), path


def test_agent_label_from_environment(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    labelled = body(
        one_call(pipeline(trees, jenkinsfile(projects["hostile"], "hostile", "iris-fastapi")), "agent")
    )
    unlabelled = one_call(
        pipeline(trees, jenkinsfile(projects["golden"], "cluster", "iris-fastapi")), "agent"
    )

    assert const(one_call(labelled, "label")["args"][0]) == HOSTILE["agent_label"]
    assert unlabelled["args"] == [{"var": "any"}]


# --- job definitions ----------------------------------------------------------------------------------


def jobs(trees: dict[str, dict[str, Any]], root: Path, env_name: str) -> dict[str, list[Node]]:
    statements = tree_of(trees, root / f"rendered/{env_name}/jenkins/jobs.groovy")
    return {const(job["args"][0]): body(job) for job in calls(statements, "pipelineJob")}


def test_jobs_cover_every_jenkinsfile(projects: dict[str, Path], trees: dict[str, dict[str, Any]]) -> None:
    root = projects["golden"]
    for env_name in ("cluster", "localhost"):
        defined = jobs(trees, root, env_name)
        expected = sorted(path.stem for path in (root / f"rendered/{env_name}/jenkins").glob("*.Jenkinsfile"))

        assert sorted(defined) == [f"homec-{env_name}/{name}" for name in expected]
        folder = one_call(tree_of(trees, root / f"rendered/{env_name}/jenkins/jobs.groovy"), "folder")
        assert const(folder["args"][0]) == f"homec-{env_name}"


def test_job_parameters_match_jenkinsfile(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    for project in ("golden", "example", "hostile"):
        root = projects[project]
        for env_dir in sorted((root / "rendered").iterdir()):
            if not env_dir.is_dir():
                continue
            for name, job in jobs(trees, root, env_dir.name).items():
                target = name.split("/", 1)[1]
                declared = body(one_call(job, "parameters"))
                job_parameters = [tuple(const(argument) for argument in node["args"]) for node in declared]

                assert all(node["call"] == "stringParam" for node in declared)
                assert job_parameters == parameters(
                    pipeline(trees, jenkinsfile(root, env_dir.name, target))
                ), name


def test_job_loads_jenkinsfile_from_repository(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    root = projects["golden"]
    job = jobs(trees, root, "cluster")["homec-cluster/iris-bentoml"]
    cps = body(one_call(body(one_call(job, "definition")), "cpsScm"))
    git = body(one_call(body(one_call(cps, "scm")), "git"))
    remote = body(one_call(git, "remote"))

    script_path = const(one_call(cps, "scriptPath")["args"][0])
    assert script_path == "rendered/cluster/jenkins/iris-bentoml.Jenkinsfile"
    assert (root / script_path).is_file()
    assert const(one_call(remote, "url")["args"][0]) == "https://git.example.com/home-mlops.git"
    assert const(one_call(git, "branch")["args"][0]) == "main"


def casc_script(root: Path, env_name: str) -> str:
    document = yaml.safe_load((root / f"rendered/{env_name}/jenkins/casc.yaml").read_text(encoding="utf-8"))
    assert list(document) == ["jobs"]
    (entry,) = document["jobs"]
    script: str = entry["script"]
    return script


def unescape_casc(text: str) -> str:
    """Undo JCasC's escape: JCasC reads ``^${`` as a literal ``${`` and expands every other ``${...}``."""
    assert "${" not in text.replace("^${", ""), "an unescaped ${ would be expanded by JCasC"
    return text.replace("^${", "${")


@pytest.mark.parametrize("project", ["golden", "hostile"])
def test_casc_seeds_the_job_script(projects: dict[str, Path], project: str) -> None:
    root = projects[project]
    for env_dir in sorted(path for path in (root / "rendered").iterdir() if path.is_dir()):
        script = casc_script(root, env_dir.name)

        assert unescape_casc(script) == (env_dir / "jenkins/jobs.groovy").read_text(encoding="utf-8")


# --- hostile configuration strings ----------------------------------------------------------------


def test_hostile_values_stay_literal_in_jenkinsfile(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    root = projects["hostile"]
    bentoml = pipeline(trees, jenkinsfile(root, "hostile", "iris-bentoml"))
    found = stages(bentoml)
    build_ids = [const(binding["named"]["credentialsId"]) for binding in credential_bindings(found["Build"])]
    push_ids = [const(binding["named"]["credentialsId"]) for binding in credential_bindings(found["Push"])]
    defaults = {name: default for name, default, _ in parameters(bentoml)}

    assert defaults["STORAGE_ROOT"] == HOSTILE["artifact_root"]
    assert build_ids == [HOSTILE["mlflow_credentials_id"], HOSTILE["storage_credentials_id"]]
    assert push_ids == [HOSTILE["registry_credentials_id"]]


def test_hostile_values_stay_literal_in_jobs(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    root = projects["hostile"]
    job = jobs(trees, root, "hostile")["homec-hostile/iris-bentoml"]
    git = body(
        one_call(body(one_call(body(one_call(body(one_call(job, "definition")), "cpsScm")), "scm")), "git")
    )

    assert const(one_call(job, "description")["args"][0]).startswith(HOSTILE["description"] + "\n\n")
    assert const(one_call(body(one_call(git, "remote")), "url")["args"][0]) == HOSTILE["repo_url"]
    assert const(one_call(git, "branch")["args"][0]) == HOSTILE["target_revision"]


def test_shell_scripts_hold_no_configuration(
    projects: dict[str, Path], trees: dict[str, dict[str, Any]]
) -> None:
    root = projects["hostile"]
    for path in sorted((root / "rendered").glob("*/jenkins/*.Jenkinsfile")):
        for script in shell_scripts(tree_of(trees, path)):
            assert "$(id)" not in script, path
            assert "quoted" not in script, path
            assert "'''" not in script, path


# --- the stages' commands, run here ------------------------------------------------------------------


@pytest.fixture
def stage_shell(tmp_path: Path) -> Path:
    """A stand-in for the pipeline's virtual environment whose bin/homec runs this checkout's homec."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    launcher = venv_bin / "homec"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m homec "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    return tmp_path / "venv"


def stage_environment(pipeline_body: list[Node], venv: Path, **parameters_given: str) -> dict[str, str]:
    """Return what Jenkins exports to a stage: the environment block, then the parameters."""
    env = {**os.environ, **environment(pipeline_body), "HOMEC_VENV": str(venv)}
    env.update({name: default for name, default, _ in parameters(pipeline_body)})
    env.update(parameters_given)
    return env


def run_stage(script: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-e", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_and_tag_stages_run_locally(
    trees: dict[str, dict[str, Any]], stage_shell: Path, projects: dict[str, Path]
) -> None:
    root = projects["golden"]
    pipeline_body = pipeline(trees, jenkinsfile(root, "cluster", "iris-bentoml"))
    found = stages(pipeline_body)
    env = stage_environment(pipeline_body, stage_shell)

    check = run_stage(shell_scripts(found["Check"])[0], root, env)
    tag = run_stage(shell_scripts(found["Resolve tag"])[0], root, env)

    assert check.returncode == 0, check.stderr
    assert tag.returncode == 0, tag.stderr
    assert tag.stdout.strip() == env["HOMEC_RENDERED_IMAGE_TAG"]


def test_tag_stage_with_other_run(
    trees: dict[str, dict[str, Any]], stage_shell: Path, projects: dict[str, Path]
) -> None:
    root = projects["golden"]
    pipeline_body = pipeline(trees, jenkinsfile(root, "cluster", "iris-bentoml"))
    run = {"EXPERIMENT_ID": "4", "RUN_ID": "fedcba9876543210fedcba9876543210"}
    env = stage_environment(pipeline_body, stage_shell, **run)

    tag = run_stage(shell_scripts(stages(pipeline_body)["Resolve tag"])[0], root, env)
    code, direct, _ = run_homec(
        "-C", root, "image-tag", "iris", "--flavor", "bentoml", "--env", "cluster",
        "--experiment-id", run["EXPERIMENT_ID"], "--run-id", run["RUN_ID"],
    )  # fmt: skip

    assert tag.returncode == 0, tag.stderr
    assert tag.stdout.strip() != env["HOMEC_RENDERED_IMAGE_TAG"]
    assert code == 0
    assert tag.stdout.strip() == direct.strip()
    assert "differs" in tag.stderr


def test_tag_stage_keeps_parameters_out_of_shell(
    trees: dict[str, dict[str, Any]], stage_shell: Path, projects: dict[str, Path], tmp_path: Path
) -> None:
    root = projects["golden"]
    pipeline_body = pipeline(trees, jenkinsfile(root, "cluster", "iris-bentoml"))
    script = shell_scripts(stages(pipeline_body)["Resolve tag"])[0]
    marker = tmp_path / "pwned"

    injected = run_stage(
        script, root, stage_environment(pipeline_body, stage_shell, RUN_ID=f"$(touch {marker})")
    )
    option_like = run_stage(script, root, stage_environment(pipeline_body, stage_shell, APP_NAME="--help"))

    assert injected.returncode == 2
    assert f"invalid run id '$(touch {marker})'" in injected.stderr
    assert not marker.exists()
    assert option_like.returncode == 2
    assert "unknown app '--help'" in option_like.stderr
