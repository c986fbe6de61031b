"""A homec project whose free-text settings contain quotes, ``'''``, ``${...}``, ``$(...)``, backslashes and
newlines, for tests that check each rendered format keeps such strings literal.

Each value is distinct, so a test can tell which setting ended up where. Settings that the schema
restricts to a pattern (names, registries, repositories, base images) cannot hold these characters and
keep ordinary values.
"""

from __future__ import annotations

import json
from pathlib import Path

# Characters each hostile value contains: quotes of every kind, Groovy and shell interpolation, a
# backslash before a quote and a Unicode escape, and line breaks.
_PAYLOAD = "it's \"quoted\" ''' \"\"\" ${HOME} $(id) `id` \\' \\u0027 a\\b\nnext line\ttab end\\"

HOSTILE = {
    "description": f"description {_PAYLOAD}",
    "experiment": f"experiment {_PAYLOAD}",
    # A path inside the run's artifacts may not contain a backslash or start with "/".
    "artifact_path": "model 'x' \"y\" ''' ${HOME} $(id) `id`\nz",
    "env_value": f"env {_PAYLOAD}",
    "repo_url": f"https://git.example.com/{_PAYLOAD}",
    "target_revision": f"branch {_PAYLOAD}",
    "registry_credentials_id": f"registry {_PAYLOAD}",
    "storage_credentials_id": f"storage {_PAYLOAD}",
    "mlflow_credentials_id": f"mlflow {_PAYLOAD}",
    "agent_label": f"label {_PAYLOAD}",
    "homec_requirement": f"homec[ml] @ git+https://git.example.com/{_PAYLOAD}",
    "artifact_root": f"gs://bucket/{_PAYLOAD}",
    "tracking_uri": f"http://mlflow.example/{_PAYLOAD}",
}


def write_hostile_project(root: Path) -> Path:
    """Write apps.yaml and environments/hostile.yaml with the ``HOSTILE`` values into ``root``.

    Values are written as JSON strings, which YAML reads as double-quoted scalars, so every character
    survives loading.
    """
    root.mkdir(parents=True, exist_ok=True)
    value = {key: json.dumps(text) for key, text in HOSTILE.items()}
    (root / "apps.yaml").write_text(
        "apps:\n"
        "  - name: iris\n"
        f"    description: {value['description']}\n"
        f"    training: {{entrypoint: training/iris/train.py, experiment: {value['experiment']}}}\n"
        "    model:\n"
        '      experiment_id: "7"\n'
        "      run_id: 0123456789abcdef0123456789abcdef\n"
        f"      artifact_path: {value['artifact_path']}\n"
        "    serving:\n"
        "      bentoml: {}\n"
        "      fastapi:\n"
        f"        env: {{GREETING: {value['env_value']}}}\n",
        encoding="utf-8",
    )
    environments = root / "environments"
    environments.mkdir(exist_ok=True)
    (environments / "hostile.yaml").write_text(
        "kind: cluster\n"
        f"mlflow: {{tracking_uri: {value['tracking_uri']}, artifact_root: {value['artifact_root']}}}\n"
        "registry: registry.example:5000/team\n"
        f"argocd: {{repo_url: {value['repo_url']}, target_revision: {value['target_revision']}}}\n"
        "jenkins:\n"
        f"  registry_credentials_id: {value['registry_credentials_id']}\n"
        f"  storage_credentials_id: {value['storage_credentials_id']}\n"
        f"  mlflow_credentials_id: {value['mlflow_credentials_id']}\n"
        f"  agent_label: {value['agent_label']}\n"
        f"  homec_requirement: {value['homec_requirement']}\n",
        encoding="utf-8",
    )
    return root
