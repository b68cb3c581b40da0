"""The workload policy applied to a PipelineSearch: what its pods may ask for.

Creating a PipelineSearch makes the operator create pods, so everything a
search puts into a pod is something its author gets: an image runs their
code, a Secret reference or a ``secret`` volume reads that Secret, a volume
mounts that storage, a projected service-account token is an API credential.
Least privilege by default: the chart's own image, Secrets and
PersistentVolumeClaims only from the allow-lists in ``WorkloadPolicy`` (chart
values ``policy.*``), volume types whose content those lists govern, no API
token of any kind, no credential in a plain ``env`` value (it would sit in
the Deployment and the ``NAME-spec`` ConfigMap for anyone who may read them),
and no env entry that shadows what the operator sets.

``problems`` returns one ``field: problem`` line per violation (each names the
chart value that would allow it); ``builders.resolve`` refuses a search with any.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ma2ml.operator.config import WorkloadPolicy
from ma2ml.spec import PipelineSearch

#: Environment variables the operator sets in every pod; a search's env must not shadow
#: them (``MA2ML_DATABASE_URL`` would replace the Secret reference with its own value).
OPERATOR_ENV = ("MA2ML_DATABASE_URL", "MA2ML_SEARCH", "MA2ML_WORKER_NAME")
#: Query parameters that carry a password in libpq and driver URLs.
PASSWORD_PARAMS = frozenset({"password", "passwd", "sslpassword"})
#: Words of an env name (split at ``_``) that say its value is a credential.
_CREDENTIAL_WORDS = frozenset({"PASSWORD", "PASSWD", "SECRET", "SECRETS", "TOKEN", "CREDENTIAL",
                               "CREDENTIALS", "APIKEY", "PASSPHRASE"})
_CREDENTIAL_PAIRS = frozenset({("API", "KEY"), ("ACCESS", "KEY"), ("PRIVATE", "KEY"),
                               ("SECRET", "KEY"), ("AUTH", "KEY")})
#: ``scheme://user:password@`` anywhere in a value, and libpq's ``password=...``.
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(^|[\s?&;])(ssl)?pass(word|wd)=\S", re.IGNORECASE)
#: Sources of a projected volume that carry no credential of their own choosing
#: (``secret`` sources are checked by name; ``serviceAccountToken`` is never allowed).
_PROJECTED_SOURCES = frozenset({"configMap", "downwardAPI", "secret", "clusterTrustBundle"})


def problems(search: PipelineSearch, policy: WorkloadPolicy) -> list[str]:
    """Every violation of ``policy`` by ``search``, one ``field: problem`` line each."""
    worker, database = search.spec.worker, search.spec.database
    found = [*_namespace(search.metadata.namespace, policy),
             *_image(worker.image, policy),
             *_account(worker.service_account_name, policy),
             *_volumes(worker.volumes, policy),
             *_env(worker.env, policy),
             *database_url_problems(database.url)]
    if database.secret_name and database.secret_name not in policy.secrets:
        found.append(_secret_line("spec.database.secretName", database.secret_name, policy))
    return found


def _namespace(namespace: str, policy: WorkloadPolicy) -> list[str]:
    if not policy.namespaces or namespace in policy.namespaces:
        return []
    return [f"metadata.namespace: {namespace!r} is not a namespace this operator runs "
            f"searches in (allowed: {', '.join(sorted(policy.namespaces))}; chart values "
            "operator.watchNamespaces or workloads.namespaces)"]


def _image(image: str, policy: WorkloadPolicy) -> list[str]:
    if policy.image_allowed(image):
        return []
    return [f"spec.worker.image: {image!r} is not under an allowed image prefix "
            f"({', '.join(policy.image_repositories)}; chart value policy.imagePrefixes)"]


def _account(account: str | None, policy: WorkloadPolicy) -> list[str]:
    if account is None or account in policy.service_accounts:
        return []
    allowed = ", ".join(sorted(policy.service_accounts)) or "none"
    return [f"spec.worker.serviceAccountName: {account!r} is not allowed by the "
            f"operator's policy (allowed: {allowed}; chart value policy.serviceAccounts)"]


def _secret_line(field: str, name: Any, policy: WorkloadPolicy) -> str:
    allowed = ", ".join(sorted(policy.secrets)) or "none"
    return (f"{field}: Secret {name!r} is not allowed by the operator's policy (allowed: "
            f"{allowed}; chart value policy.secrets)")


def _volumes(volumes: list[dict[str, Any]], policy: WorkloadPolicy) -> Iterator[str]:
    for i, volume in enumerate(volumes):
        at = f"spec.worker.volumes[{i}]"
        for kind in sorted(set(volume) - {"name"}):
            source = volume[kind] if isinstance(volume[kind], Mapping) else {}
            if kind == "hostPath":
                if not policy.allow_host_path:
                    # A hostPath volume reads or writes the node's own files: a way out.
                    yield (f"{at}.hostPath: hostPath volumes are not allowed by the operator's "
                           "policy (chart value policy.allowHostPath); use a "
                           "persistentVolumeClaim")
            elif kind not in policy.volume_types:
                yield (f"{at}.{kind}: volume type {kind!r} is not allowed by the operator's "
                       f"policy (allowed: {', '.join(sorted(policy.volume_types))}; chart "
                       "value policy.volumeTypes)")
            elif kind == "secret" and source.get("secretName") not in policy.secrets:
                yield _secret_line(f"{at}.secret.secretName", source.get("secretName"), policy)
            elif kind == "persistentVolumeClaim" and \
                    source.get("claimName") not in policy.volume_claims:
                allowed = ", ".join(sorted(policy.volume_claims)) or "none"
                yield (f"{at}.persistentVolumeClaim.claimName: {source.get('claimName')!r} is "
                       f"not allowed by the operator's policy (allowed: {allowed}; chart "
                       "value policy.persistentVolumeClaims)")
            elif kind == "projected":
                yield from _projected(at, source, policy)


def _projected(at: str, source: Mapping[str, Any], policy: WorkloadPolicy) -> Iterator[str]:
    for j, item in enumerate(source.get("sources") or []):
        for kind in sorted(item if isinstance(item, Mapping) else {}):
            where = f"{at}.projected.sources[{j}].{kind}"
            if kind == "serviceAccountToken":
                yield (f"{where}: learner and worker pods get no Kubernetes API token "
                       "(they talk to the database only)")
            elif kind not in _PROJECTED_SOURCES:
                yield (f"{where}: projected source {kind!r} is not allowed by the operator's "
                       f"policy (allowed: {', '.join(sorted(_PROJECTED_SOURCES))})")
            elif kind == "secret" and (item[kind] or {}).get("name") not in policy.secrets:
                yield _secret_line(f"{where}.name", (item[kind] or {}).get("name"), policy)


def _env(env: list[dict[str, Any]], policy: WorkloadPolicy) -> Iterator[str]:
    for i, entry in enumerate(env):
        name = str(entry.get("name", ""))
        at = f"spec.worker.env[{i}]"
        if name in OPERATOR_ENV:
            yield (f"{at}.name: {name} is set by the operator (from the database Secret or "
                   "the search) and may not be overridden")
            continue
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if isinstance(ref, Mapping) and ref.get("name") not in policy.secrets:
            yield _secret_line(f"{at}.valueFrom.secretKeyRef.name", ref.get("name"), policy)
        value = entry.get("value")
        if isinstance(value, str) and value and (credential_name(name)
                                                 or value_has_password(value)):
            yield (f"{at}.value: {name} holds a credential in plain text, readable in the "
                   "Deployment and the NAME-spec ConfigMap; put it in a Secret listed in the "
                   "chart value policy.secrets and use valueFrom.secretKeyRef")


def credential_name(name: str) -> bool:
    """True for env names that hold credentials: ``HF_TOKEN``, ``PGPASSWORD``,
    ``AWS_SECRET_ACCESS_KEY``, ``WANDB_API_KEY`` (not ``TOKENIZERS_PARALLELISM``)."""
    words = [w for w in name.upper().split("_") if w]
    if any(w in _CREDENTIAL_WORDS or w.endswith(("PASSWORD", "PASSWD")) for w in words):
        return True
    return any(pair in _CREDENTIAL_PAIRS for pair in zip(words, words[1:], strict=False))


def value_has_password(value: str) -> bool:
    """True when ``value`` holds ``scheme://user:PASSWORD@`` or ``password=...``."""
    return bool(_URL_PASSWORD.search(value) or _KEYWORD_PASSWORD.search(value))


def database_url_problems(url: str | None) -> list[str]:
    """``spec.database.url`` must be a URL, and one without a password."""
    if url is None:
        return []
    try:
        has_password = url_has_password(url)
    except ArgumentError:
        return ["spec.database.url: not a database URL (dialect+driver://user@host:port/db)"]
    if has_password:
        # The spec is readable by anyone who can list PipelineSearches, and its URL
        # would reach the pod spec and the NAME-spec ConfigMap in clear text.
        return ["spec.database.url: carries a password; put the URL in a Secret and name "
                "it in spec.database.secretName (and secretKey) instead"]
    return []


def url_has_password(url: str) -> bool:
    """True when a SQLAlchemy URL holds a password (``user:PASSWORD@`` or ``?password=``).

    Raises sqlalchemy's ``ArgumentError`` when ``url`` is not a URL at all.
    """
    parsed = make_url(url)
    return bool(parsed.password) or any(k.lower() in PASSWORD_PARAMS for k in parsed.query)
