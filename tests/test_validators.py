"""Tests for tests/support/validators.py: each validator catches real faults and passes good input.

Tests that need groovy, hadolint, kubernetes-validate or the Argo CD CRDs skip with the
install command when the tool is missing, and fail instead when CI is set.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import validators
from tests.support.validators import (
    Problem,
    compile_groovy,
    format_problems,
    load_yaml_documents,
    parse_yaml_documents,
    require_tool,
    run_hadolint,
    tool_missing_reason,
    validate_argocd,
    validate_kubernetes,
    validate_manifests,
)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    """Return the 1-based number of the first line of ``text`` that contains ``fragment``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not found in the test input")


@pytest.fixture
def kubernetes_validate() -> None:
    require_tool("kubernetes-validate")


@pytest.fixture
def argocd_schemas() -> None:
    require_tool("argocd-schemas")


@pytest.fixture
def groovy() -> None:
    require_tool("groovy")


@pytest.fixture
def hadolint() -> None:
    require_tool("hadolint")


# --- Kubernetes ----------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: iris-serving
  namespace: iris
  labels:
    app.kubernetes.io/name: iris-serving
    app.kubernetes.io/version: "1.4.0"
  annotations:
    # Unquoted on purpose: kubectl's YAML decoder keeps a date as a string, while
    # PyYAML's safe_load (and the kubernetes-validate CLI) turn it into a date.
    homec.example/rendered-at: 2024-05-01
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: iris-serving
  template:
    metadata:
      labels:
        app.kubernetes.io/name: iris-serving
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: server
          image: registry.local/iris-serving:1.4.0
          ports:
            - containerPort: 3000
              name: http
          resources:
            requests: {cpu: 100m, memory: 256Mi}
            limits: {cpu: "1", memory: 512Mi}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
---
apiVersion: v1
kind: Service
metadata:
  name: iris-serving
  namespace: iris
spec:
  selector:
    app.kubernetes.io/name: iris-serving
  ports:
    - port: 80
      targetPort: http
"""


def test_kubernetes_valid_deployment_passes(kubernetes_validate: None, tmp_path: Path) -> None:
    path = write(tmp_path, "deployment.yaml", DEPLOYMENT)

    problems = validate_kubernetes(path)

    assert problems == [], format_problems(problems)


def test_kubernetes_unknown_field_fails_strict(kubernetes_validate: None, tmp_path: Path) -> None:
    text = DEPLOYMENT.replace("  replicas: 2", "  replicsa: 2")
    path = write(tmp_path, "deployment.yaml", text)

    problems = validate_kubernetes(path)

    assert len(problems) == 1, format_problems(problems)
    assert problems[0].message == 'Deployment/iris-serving: unknown field "spec.replicsa"'
    assert problems[0].file == str(path)
    assert (problems[0].line, problems[0].column) == (line_of(text, "replicsa:"), 3)


def test_kubernetes_unknown_field_passes_lenient(kubernetes_validate: None, tmp_path: Path) -> None:
    path = write(tmp_path, "deployment.yaml", DEPLOYMENT.replace("  replicas: 2", "  replicsa: 2"))

    problems = validate_kubernetes(path, strict=False)

    assert problems == [], format_problems(problems)


def test_kubernetes_unknown_container_field_fails(kubernetes_validate: None) -> None:
    text = DEPLOYMENT.replace("          image: registry", "          imgae: registry")

    problems = validate_kubernetes(parse_yaml_documents(text, "deployment.yaml"))

    messages = [problem.message for problem in problems]
    assert 'Deployment/iris-serving: unknown field "spec.template.spec.containers[0].imgae"' in messages


def test_kubernetes_reports_every_error(kubernetes_validate: None) -> None:
    text = DEPLOYMENT.replace("  replicas: 2", '  replicas: "two"').replace(
        "          ports:", "          portz:"
    )

    problems = validate_kubernetes(parse_yaml_documents(text, "deployment.yaml"))

    messages = [problem.message for problem in problems]
    assert len(problems) == 2, format_problems(problems)
    assert any("spec.replicas: 'two' is not of type 'integer'" in message for message in messages)
    assert any('unknown field "spec.template.spec.containers[0].portz"' in message for message in messages)


def test_kubernetes_missing_required_field_fails(kubernetes_validate: None) -> None:
    document = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    }

    problems = validate_kubernetes(document)

    assert [problem.message for problem in problems] == [
        'Deployment/web: missing required field "spec.selector"'
    ]
    assert problems[0].file == "<document 0>"
    assert problems[0].line is None


def test_kubernetes_missing_name_fails(kubernetes_validate: None) -> None:
    document = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "iris"}, "data": {}}

    problems = validate_kubernetes(document)

    assert [problem.message for problem in problems] == [
        'ConfigMap (document 0): missing required field "metadata.name"'
    ]


def test_kubernetes_metadata_rules_fail(kubernetes_validate: None) -> None:
    text = """
    apiVersion: v1
    kind: Service
    metadata:
      name: 1-iris
      namespace: Iris
      labels:
        version: 1.4.0 beta
        bad key!: x
    spec:
      ports: [{port: 80}]
    """

    problems = validate_kubernetes(parse_yaml_documents(textwrap.dedent(text), "service.yaml"))

    messages = "\n".join(problem.message for problem in problems)
    assert len(problems) == 4, format_problems(problems)
    assert "metadata.name '1-iris' must be an RFC 1035 label" in messages
    assert "metadata.namespace 'Iris' must be a lowercase RFC 1123 label" in messages
    assert "label value '1.4.0 beta' for key 'version'" in messages
    assert "label key 'bad key!'" in messages


def test_kubernetes_unquoted_number_label_fails(kubernetes_validate: None) -> None:
    text = DEPLOYMENT.replace('app.kubernetes.io/version: "1.4.0"', "app.kubernetes.io/version: 1.4")

    problems = validate_kubernetes(parse_yaml_documents(text, "deployment.yaml"))

    assert len(problems) == 1, format_problems(problems)
    assert "metadata.labels.app.kubernetes.io/version: 1.4 is not of type 'string'" in problems[0].message
    assert problems[0].line == line_of(text, "app.kubernetes.io/version")


def test_kubernetes_rbac_name_with_colon_passes(kubernetes_validate: None) -> None:
    document = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "homec:reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }

    problems = validate_kubernetes(document)

    assert problems == [], format_problems(problems)


def test_kubernetes_duplicate_key_fails(kubernetes_validate: None) -> None:
    text = DEPLOYMENT.replace("  replicas: 2", "  replicas: 2\n  replicas: 3")

    problems = validate_kubernetes(parse_yaml_documents(text, "deployment.yaml"))

    assert len(problems) == 1, format_problems(problems)
    assert 'duplicate field "spec.replicas"' in problems[0].message
    assert problems[0].line == line_of(text, "replicas: 3")


def test_kubernetes_custom_resource_skipped_by_default(kubernetes_validate: None) -> None:
    service_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "iris"},
        "spec": {"anything": True},
    }

    assert validate_kubernetes(service_monitor) == []

    problems = validate_kubernetes(service_monitor, fail_on_unknown_kinds=True)
    assert len(problems) == 1, format_problems(problems)
    assert "no schema for kind ServiceMonitor" in problems[0].message


def test_kubernetes_argocd_kind_skipped_by_default(kubernetes_validate: None) -> None:
    application = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "x"}}

    assert validate_kubernetes(application) == []
    assert len(validate_kubernetes(application, fail_on_unknown_kinds=True)) == 1


def test_kubernetes_custom_group_not_matched_to_builtin(kubernetes_validate: None) -> None:
    # kubernetes-validate names schema files without the group's domain, so
    # apps.example.com/v1 would otherwise pick the schema of apps/v1.
    custom = {
        "apiVersion": "apps.example.com/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {},
    }

    assert validate_kubernetes(custom) == []
    assert len(validate_kubernetes(custom, fail_on_unknown_kinds=True)) == 1


def test_kubernetes_invalid_yaml_reports_line(kubernetes_validate: None, tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n")

    problems = validate_kubernetes(path)

    assert len(problems) == 1, format_problems(problems)
    assert problems[0].message.startswith("invalid YAML:")
    assert problems[0].line == 5


def test_kubernetes_missing_file_reported(kubernetes_validate: None, tmp_path: Path) -> None:
    problems = validate_kubernetes(tmp_path / "absent.yaml")

    assert len(problems) == 1
    assert problems[0].message.startswith("failed to read file:")


def test_kubernetes_empty_file_reported(kubernetes_validate: None, tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "---\n# nothing rendered\n")

    problems = validate_kubernetes(path)

    assert [problem.message for problem in problems] == ["file contains no YAML documents"]


def test_kubernetes_missing_kind_and_non_mapping(kubernetes_validate: None) -> None:
    problems = validate_kubernetes([{"apiVersion": "v1", "metadata": {"name": "x"}}, ["not", "an", "object"]])

    assert [problem.message for problem in problems] == [
        'document 0: missing required field "kind"',
        "document 1: document is a list, expected a mapping",
    ]


def test_kubernetes_unbundled_version_raises(kubernetes_validate: None) -> None:
    with pytest.raises(ValueError, match="not bundled"):
        validate_kubernetes({"apiVersion": "v1", "kind": "ConfigMap"}, version="1.99.0")


def test_kubernetes_older_version_rejects_newer_field(kubernetes_validate: None) -> None:
    # Pod-level `resources` appeared in Kubernetes 1.32.
    document = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "resources": {"limits": {"cpu": "1"}},
            "containers": [{"name": "c", "image": "busybox:1.36"}],
        },
    }

    assert validate_kubernetes(document, version="1.37.0") == []
    problems = validate_kubernetes(document, version="1.31.0")
    assert [problem.message for problem in problems] == ['Pod/p: unknown field "spec.resources"']


# --- YAML loading --------------------------------------------------------------------


def test_load_yaml_documents_positions(tmp_path: Path) -> None:
    path = write(
        tmp_path, "stream.yaml", "---\n# empty\n---\na: 1\nlist:\n  - x\n  - y: =\n---\nb: 2023-01-02\n"
    )

    documents = load_yaml_documents(path)

    assert [document.index for document in documents] == [1, 2]
    assert documents[0].data == {"a": 1, "list": ["x", {"y": "="}]}
    assert documents[0].locate(("list", 1, "y")) == (7, 5)
    assert documents[0].locate(("list", 5)) == (5, 1)
    assert documents[1].data == {"b": "2023-01-02"}


# --- Argo CD -------------------------------------------------------------------------

APPLICATION = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: iris-serving-dev
  namespace: argocd
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  project: homelab
  source:
    repoURL: https://git.home.example/gitops.git
    path: rendered/dev/iris-serving
    targetRevision: main
  destination:
    server: https://kubernetes.default.svc
    namespace: iris
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
"""

APP_PROJECT = """\
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: homelab
  namespace: argocd
spec:
  sourceRepos: ["https://git.home.example/*"]
  destinations:
    - server: https://kubernetes.default.svc
      namespace: "*"
  clusterResourceWhitelist:
    - group: ""
      kind: Namespace
"""

APPLICATION_SET = """\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: iris-serving
  namespace: argocd
spec:
  goTemplate: true
  generators:
    - list:
        elements:
          - env: dev
            replicas: 1
          - env: prod
            replicas: 3
  template:
    metadata:
      name: "iris-serving-{{.env}}"
    spec:
      project: homelab
      source:
        repoURL: https://git.home.example/gitops.git
        path: "rendered/{{.env}}/iris-serving"
        targetRevision: main
      destination:
        server: https://kubernetes.default.svc
        namespace: "iris-{{.env}}"
      syncPolicy:
        automated: {prune: true, selfHeal: true}
"""


def test_argocd_valid_application_passes(argocd_schemas: None, tmp_path: Path) -> None:
    path = write(tmp_path, "application.yaml", APPLICATION)

    problems = validate_argocd(path)

    assert problems == [], format_problems(problems)


def test_argocd_valid_project_and_set_pass(argocd_schemas: None) -> None:
    documents = parse_yaml_documents(APP_PROJECT + "---\n" + APPLICATION_SET, "argocd.yaml")

    problems = validate_argocd(documents)

    assert len(documents) == 2
    assert problems == [], format_problems(problems)


def test_argocd_misspelled_field_fails(argocd_schemas: None, tmp_path: Path) -> None:
    text = APPLICATION.replace("      prune: true", "      prunee: true")
    path = write(tmp_path, "application.yaml", text)

    problems = validate_argocd(path)

    assert len(problems) == 1, format_problems(problems)
    assert (
        problems[0].message
        == 'Application/iris-serving-dev: unknown field "spec.syncPolicy.automated.prunee"'
    )
    assert (problems[0].line, problems[0].column) == (line_of(text, "prunee:"), 7)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    server: https", "    sever: https", 'unknown field "spec.destination.sever"'),
        ("  source:", "  sources:", "spec.sources: {'repoURL'"),
        ("  project: homelab", "  projct: homelab", 'missing required field "spec.project"'),
        (
            "      selfHeal: true",
            '      selfHeal: "yes"',
            "spec.syncPolicy.automated.selfHeal: 'yes' is not of type",
        ),
        ("  finalizers:", "  finalisers:", 'unknown field "metadata.finalisers"'),
        ("  name: iris-serving-dev", "  name: Iris_Serving", "must be a lowercase RFC 1123 subdomain"),
    ],
    ids=[
        "destination-typo",
        "source-renamed",
        "project-missing",
        "string-for-bool",
        "metadata-typo",
        "bad-name",
    ],
)
def test_argocd_application_faults_fail(argocd_schemas: None, old: str, new: str, expected: str) -> None:
    assert old in APPLICATION
    documents = parse_yaml_documents(APPLICATION.replace(old, new), "application.yaml")

    problems = validate_argocd(documents)

    messages = "\n".join(problem.message for problem in problems)
    assert expected in messages


def test_argocd_free_form_fields_pass(argocd_schemas: None) -> None:
    # helm.valuesObject carries x-kubernetes-preserve-unknown-fields, so any field is valid inside it.
    text = APPLICATION.replace(
        "    targetRevision: main\n",
        "    targetRevision: main\n    helm:\n      valuesObject:\n        any: {nested: [1, 2]}\n",
    )

    problems = validate_argocd(parse_yaml_documents(text, "application.yaml"))

    assert problems == [], format_problems(problems)


def test_argocd_application_set_template_typo_fails(argocd_schemas: None) -> None:
    text = APPLICATION_SET.replace("        targetRevision: main", "        targetRevison: main")

    problems = validate_argocd(parse_yaml_documents(text, "set.yaml"))

    assert len(problems) == 1, format_problems(problems)
    assert 'unknown field "spec.template.spec.source.targetRevison"' in problems[0].message


def test_argocd_wrong_api_version_fails(argocd_schemas: None) -> None:
    text = APPLICATION.replace("argoproj.io/v1alpha1", "argoproj.io/v1beta1")

    problems = validate_argocd(parse_yaml_documents(text, "application.yaml"))

    assert len(problems) == 1, format_problems(problems)
    assert "apiVersion argoproj.io/v1beta1 is not served for kind Application" in problems[0].message


def test_argocd_rejects_other_kinds(argocd_schemas: None) -> None:
    problems = validate_argocd({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})

    assert len(problems) == 1, format_problems(problems)
    assert "kind ConfigMap is not an Argo CD kind" in problems[0].message


def test_argocd_missing_name_fails(argocd_schemas: None) -> None:
    text = APPLICATION.replace("  name: iris-serving-dev\n", "")

    problems = validate_argocd(parse_yaml_documents(text, "application.yaml"))

    assert [problem.message for problem in problems] == [
        'Application (document 0): missing required field "metadata.name"'
    ]


def test_argocd_missing_schema_dir_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(validators.ARGOCD_SCHEMA_DIR_ENV, str(tmp_path / "absent"))

    problems = validate_argocd({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"})

    assert len(problems) == 1
    assert "Argo CD CRDs not found" in problems[0].message
    assert validators.ARGOCD_SCHEMA_DIR_ENV in problems[0].message


def test_forbid_undeclared_fields_rules() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "typed": {"type": "object", "properties": {"a": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"b": {}}}},
            "count": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            "empty": {"type": "object"},
            "optional": {"type": "string", "nullable": True},
        },
    }

    strict = validators._forbid_undeclared_fields(schema)

    assert strict["additionalProperties"] is False
    assert strict["properties"]["typed"]["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["free"]
    assert strict["properties"]["map"]["additionalProperties"]["additionalProperties"] is False
    assert strict["properties"]["count"] == schema["properties"]["count"]
    assert strict["properties"]["empty"]["additionalProperties"] is False
    assert strict["properties"]["optional"]["type"] == ["string", "null"]
    assert "additionalProperties" not in schema, "the input schema must not be modified"


# --- Routing -------------------------------------------------------------------------


def test_validate_manifests_routes_by_group(kubernetes_validate: None, argocd_schemas: None) -> None:
    text = (
        DEPLOYMENT
        + "---\n"
        + APPLICATION.replace("      prune: true", "      prunee: true")
        + "---\napiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: iris}\n"
    )

    problems = validate_manifests(parse_yaml_documents(text, "all.yaml"))

    assert [(problem.validator, problem.line) for problem in problems] == [
        ("argocd", line_of(text, "prunee:")),
        ("kubernetes", line_of(text, "kind: ServiceMonitor")),
    ]
    assert 'unknown field "spec.syncPolicy.automated.prunee"' in problems[0].message
    assert "no schema for kind ServiceMonitor" in problems[1].message


# --- Groovy --------------------------------------------------------------------------

DECLARATIVE_PIPELINE = """\
@Library('homec-shared') _

pipeline {
    agent { label 'podman' }
    options { timeout(time: 30, unit: 'MINUTES') }
    environment {
        IMAGE = "registry.local/iris-serving:${env.GIT_COMMIT.take(12)}"
    }
    stages {
        stage('Train') {
            steps {
                sh 'python -m training.iris.train --output model/'
            }
        }
        stage('Build image') {
            when { branch 'main' }
            steps {
                script {
                    def tags = [env.IMAGE, 'registry.local/iris-serving:latest']
                    tags.each { tag -> sh "podman build -t ${tag} ." }
                }
            }
        }
    }
    post {
        failure { echo "Build ${currentBuild.fullDisplayName} failed" }
    }
}
"""

JOB_DSL = """\
pipelineJob('iris-serving') {
    definition {
        cpsScm {
            scm { git { remote { url('https://git.home.example/gitops.git') } } }
            scriptPath('jenkins/iris-serving/Jenkinsfile')
        }
    }
    triggers { scm('H/5 * * * *') }
}
"""


@pytest.mark.integration
def test_groovy_valid_pipeline_passes(groovy: None, tmp_path: Path) -> None:
    path = write(tmp_path, "Jenkinsfile", DECLARATIVE_PIPELINE)

    problems = compile_groovy([path])

    assert problems == [], format_problems(problems)


@pytest.mark.integration
def test_groovy_unclosed_brace_fails(groovy: None, tmp_path: Path) -> None:
    # Without the last line, `pipeline {` is never closed, so the parser reaches the
    # end of the file and reports the line after the last one.
    broken = DECLARATIVE_PIPELINE.removesuffix("}\n")
    path = write(tmp_path, "Jenkinsfile", broken)

    problems = compile_groovy([path])

    assert len(problems) == 1, format_problems(problems)
    assert problems[0].file == str(path)
    assert problems[0].line == broken.count("\n") + 1
    assert "expecting '}'" in problems[0].message
    assert problems[0].column is not None


@pytest.mark.integration
def test_groovy_unterminated_string_fails(groovy: None, tmp_path: Path) -> None:
    path = write(tmp_path, "seed.groovy", "job('x') {\n    description('never closed)\n}\n")

    problems = compile_groovy([path])

    assert len(problems) == 1, format_problems(problems)
    assert problems[0].line == 2


@pytest.mark.integration
def test_groovy_checks_many_files_in_one_jvm(
    groovy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [write(tmp_path, f"Jenkinsfile.{index}", DECLARATIVE_PIPELINE) for index in range(3)]
    dsl = write(tmp_path, "jobs.groovy", JOB_DSL)
    broken = write(tmp_path, "broken.groovy", "def x = [1, 2\n")
    missing = tmp_path / "absent.groovy"

    launches: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(command: list[str], *args: Any, **kwargs: Any) -> Any:
        launches.append(command)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting_run)

    problems = compile_groovy([*good, dsl, broken, missing])

    assert len(launches) == 1
    assert [problem.file for problem in problems] == [str(broken), str(missing)], format_problems(problems)
    assert problems[0].line == 1
    assert problems[1].message == f"file not found: {missing}"


def test_groovy_no_paths_starts_no_jvm() -> None:
    assert compile_groovy([]) == []


def test_groovy_missing_tool_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    problems = compile_groovy(["Jenkinsfile"])

    assert len(problems) == 1
    assert "groovy and java not found on PATH" in problems[0].message


# --- hadolint ------------------------------------------------------------------------

CLEAN_DOCKERFILE = """\
FROM python:3.11.9-slim-bookworm
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY service.py .
USER 10001
EXPOSE 3000
CMD ["python", "service.py"]
"""


def codes(problems: list[Problem]) -> list[str | None]:
    return [problem.code for problem in problems]


def test_hadolint_clean_dockerfile_passes(hadolint: None, tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", CLEAN_DOCKERFILE)

    problems = run_hadolint([path])

    assert problems == [], format_problems(problems)


def test_hadolint_latest_tag_flagged(hadolint: None, tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", CLEAN_DOCKERFILE.replace("python:3.11.9-slim-bookworm", "x:latest"))

    problems = run_hadolint([path])

    assert codes(problems) == ["DL3007"], format_problems(problems)
    assert problems[0].line == 1
    assert problems[0].severity == "warning"
    assert problems[0].file == str(path)


def test_hadolint_root_user_flagged(hadolint: None, tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", CLEAN_DOCKERFILE.replace("USER 10001", "USER root"))

    problems = run_hadolint([path])

    assert "DL3002" in codes(problems), format_problems(problems)


def test_hadolint_does_not_require_user(hadolint: None, tmp_path: Path) -> None:
    # hadolint has no rule for a Dockerfile without USER (DL3002 only checks the last
    # USER), so a renderer that must drop root needs a check of its own.
    path = write(tmp_path, "Dockerfile", CLEAN_DOCKERFILE.replace("USER 10001\n", ""))

    problems = run_hadolint([path])

    assert problems == [], format_problems(problems)


def test_hadolint_inline_ignore_honoured(hadolint: None, tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        FROM debian:12.8-slim
        # hadolint ignore=DL3008
        RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
        USER 10001
        """
    )
    path = write(tmp_path, "Dockerfile", text)

    problems = run_hadolint([path])

    assert problems == [], format_problems(problems)
    unignored = write(tmp_path, "Dockerfile.unignored", text.replace("# hadolint ignore=DL3008\n", ""))
    assert codes(run_hadolint([unignored])) == ["DL3008"]


def test_hadolint_environment_ignores_dropped(
    hadolint: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HADOLINT_IGNORE", "DL3007")
    path = write(tmp_path, "Dockerfile", "FROM x:latest\nUSER 10001\n")

    problems = run_hadolint([path])

    assert codes(problems) == ["DL3007"], format_problems(problems)


def test_hadolint_several_files_and_missing_one(hadolint: None, tmp_path: Path) -> None:
    clean = write(tmp_path, "Dockerfile.clean", CLEAN_DOCKERFILE)
    latest = write(tmp_path, "Dockerfile.latest", "FROM x:latest\nUSER 10001\n")
    syntax = write(tmp_path, "Dockerfile.syntax", "FROM alpine:3.20\nRUNN echo hi\n")
    missing = tmp_path / "Dockerfile.absent"

    problems = run_hadolint([clean, latest, missing, syntax])

    found = sorted((problem.file, problem.code) for problem in problems)
    assert found == [(str(missing), None), (str(latest), "DL3007"), (str(syntax), "DL1000")]


# --- Tool discovery ------------------------------------------------------------------


def test_tool_missing_reason_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown tool name"):
        tool_missing_reason("kubectl")


def test_require_tool_skips_locally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="hadolint not found on PATH"):
        require_tool("hadolint")


@pytest.mark.parametrize("ci_value", ["true", "1"])
def test_require_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci_value: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci_value)

    with pytest.raises(pytest.fail.Exception, match="hadolint not found on PATH"):
        require_tool("hadolint")


def test_require_tool_ci_false_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "false")

    with pytest.raises(pytest.skip.Exception):
        require_tool("groovy")
