"""``homec check --online``: verify every pinned model on its environment's tracking store.

For each environment and app with a model, the registered model, alias, version and run the
reference names must exist, and a recorded run or experiment must match what the store has. The
model must have an MLmodel file with a signature. A ``signatures/<app>.json`` recorded for the same
model URI must equal that signature. Plain ``homec check`` never gets here and never contacts a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from homec.commands.promote import model_location
from homec.config.project import Project
from homec.errors import HomecError, Problem
from homec.mlflow_client import ModelReferenceError, TrackingStoreError, open_client, resolve_model
from homec.signatures import ModelSignature, SignatureFileError, parse_signature, signature_path
from homec.tracking_store import resolve_store
from homec.yamledit import locate


class OnlineCheckError(HomecError):
    """Pinned models that do not resolve on their tracking stores, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        noun = "model reference" if len(problems) == 1 else "model references"
        super().__init__(f"{len(problems)} {noun} failed the online check")

    def format(self) -> str:
        return "\n".join([*(problem.format() for problem in self.problems), f"{self.message}."])


@dataclass(frozen=True)
class VerifiedModel:
    environment: str
    app: str
    model_uri: str
    chain: str
    inputs: int
    outputs: int


@dataclass
class OnlineReport:
    verified: list[VerifiedModel] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def check_online(
    project: Project, environments: tuple[str, ...] = (), apps: tuple[str, ...] = ()
) -> OnlineReport:
    """Resolve every pinned model of the selected environments and apps; collect successes and problems."""
    report = OnlineReport()
    for env_name in sorted(environments or project.environments):
        pinned = [
            (name, spec)
            for (env, name), spec in sorted(project.effective.items())
            if env == env_name and spec.model is not None and (not apps or name in apps)
        ]
        if not pinned:
            continue
        store = resolve_store(project.root, env_name, project.environments[env_name])
        try:
            client = open_client(store)
        except TrackingStoreError as exc:
            report.problems.extend(_problem(project, name, env_name, exc) for name, _ in pinned)
            continue
        for name, spec in pinned:
            assert spec.model is not None
            try:
                resolved = resolve_model(client, store, spec.model, name)
                signature = ModelSignature.from_mlflow(spec.model.uri, resolved.signature)
                _compare_recorded(project, name, signature)
            except (ModelReferenceError, SignatureFileError) as exc:
                report.problems.append(_problem(project, name, env_name, exc))
                continue
            outputs = len(signature.outputs or [])
            report.verified.append(
                VerifiedModel(
                    env_name, name, spec.model.uri, resolved.chain(), len(signature.inputs), outputs
                )
            )
    return report


def _compare_recorded(project: Project, app: str, signature: ModelSignature) -> None:
    path = signature_path(app)
    data = project.inputs.get(path)
    if data is None:
        return
    recorded = parse_signature(data, path)
    if recorded.model_uri == signature.model_uri and recorded != signature:
        raise SignatureFileError(
            f"{path} differs from the signature of {signature.model_uri} on the tracking store",
            f"run homec promote {app} again to record the model's current signature",
        )


def _problem(project: Project, app: str, environment: str, error: HomecError) -> Problem:
    location = model_location(project, app, environment)
    text = (project.root / location.file).read_bytes().decode("utf-8")
    line, column = locate(text, location.path) or (1, 1)
    key_path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location.path).lstrip(
        "."
    )
    return Problem(
        location.file, line, column, key_path, f"environment {environment!r}: {error.message}", error.hint
    )
