"""``lightray submit``: ``ray job submit`` with an upload guard. Runs on the driver (the submitting machine).

    lightray submit --address http://127.0.0.1:8265 -- lightray fit --config run.yaml
    lightray submit --runtime-env cluster/runtime_env.yaml --no-wait -- python examples/cifar10.py --synthetic

Ray uploads the job's ``working_dir`` (by default ``.``) to the cluster. Before it is sent, this states
the upload's size and keeps out what never belongs in it: ``.git``, virtual environments, checkpoints,
data folders and run outputs (:data:`DEFAULT_EXCLUDES`, plus ``.gitignore``/``.rayignore`` as Ray
reads them). Files that look like credentials (:data:`SECRET_PATTERNS`: ``.env``, SSH and cloud keys,
``.netrc``, ...) are never sent unless ``--include`` names them. Ray's packager follows symbolic links, so
the stated size counts what they point to, and links that leave the working folder are refused unless
``--allow-links-outside``. Uploads above ``--max-upload-mib`` are refused with the largest files named.
Every other option is ``ray job submit``'s and is passed on unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightray.errors import MisconfigurationError

# gitwildmatch patterns, as runtime_env ``excludes`` takes them; a leading "/" anchors at the working_dir
DEFAULT_EXCLUDES = [
    ".git",
    "__pycache__",
    "/.venv",
    "/venv",
    "/checkpoints",
    "*.ckpt",
    "/data",
    "/datasets",
    "/lightning_logs",
    "/ray_results",
    "/mlruns",
    "/wandb",
]
MAX_UPLOAD_MIB = 100.0

# What looks like a credential: never uploaded unless --include names it (gitwildmatch, as above)
SECRET_PATTERNS = [
    ".env", ".env.*", "!.env.example", "!.env.sample", "!.env.template",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "!*.pub",
    ".ssh/", ".aws/", ".gnupg/", ".kube/", ".azure/", ".config/gcloud/", ".docker/config.json",
    ".netrc", ".pgpass", ".npmrc", ".pypirc", ".git-credentials",
    "credentials.json", "credentials", "*service-account*.json", "*.tfvars", "secrets.yaml", "secrets.yml",
]  # fmt: skip


@dataclass
class Upload:
    """What Ray would upload from ``working_dir``: the files kept, their total size, the excludes used."""

    working_dir: Path
    excludes: list[str]
    files: list[tuple[str, int]] = field(default_factory=list)  # (relative path, bytes)
    secrets: list[str] = field(default_factory=list)  # left out: they look like credentials
    included_secrets: list[str] = field(default_factory=list)  # look like credentials, sent: --include named them
    outside_links: list[tuple[str, str]] = field(default_factory=list)  # (link, where it points) out of the folder

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self) -> str:
        lines = [
            f"uploading working_dir {self.working_dir}: {len(self.files)} files, {_human(self.size)} "
            f"(left out: {', '.join(p for p in self.excludes if p not in self._secret_excludes)}, and what "
            ".gitignore/.rayignore name)"
        ]
        if self.secrets:
            shown = ", ".join(self.secrets[:8]) + (", ..." if len(self.secrets) > 8 else "")
            lines.append(
                f"left out: {len(self.secrets)} files that look like credentials ({shown}); "
                "--include PATTERN sends one anyway"
            )
        for path in self.included_secrets:
            lines.append(f"WARNING: sending {path}, which looks like a credential, because --include named it")
        return "\n".join(lines)

    @property
    def _secret_excludes(self) -> set[str]:
        return {f"/{path}" for path in self.secrets}


def plan_upload(
    working_dir: str | os.PathLike, excludes: list[str] | None = None, include: list[str] | None = None
) -> Upload:
    """The files Ray would upload from ``working_dir`` with ``excludes``, the defaults and ignore files. Driver.

    Follows Ray's rules: gitwildmatch patterns relative to the working_dir; ``.gitignore`` (unless
    ``RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1``) and ``.rayignore`` apply in their own folder and below; symbolic
    links are followed (a linked folder's files are sent, and counted). Top-level folders holding a
    ``pyvenv.cfg`` (virtual environments under any name) are left out too, and so are files that look like
    credentials (:data:`SECRET_PATTERNS`) unless an ``include`` pattern names them.
    """
    root = Path(working_dir).resolve()
    if not root.is_dir():
        raise MisconfigurationError(f"working_dir {os.fspath(working_dir)!r} is not a folder")
    patterns = [*DEFAULT_EXCLUDES, *(excludes or [])]
    patterns += [f"/{p.name}" for p in root.iterdir() if (p / "pyvenv.cfg").is_file() and f"/{p.name}" not in patterns]
    upload = Upload(root, patterns)
    secret, included = _spec(SECRET_PATTERNS), _spec(include or [])
    ignore_files = [".rayignore"] + (
        [] if os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE") == "1" else [".gitignore"]
    )

    def walk(folder: Path, specs: list[tuple[Path, Any]], seen: frozenset[Path]) -> None:
        for name in ignore_files:
            if (folder / name).is_file():
                specs = [*specs, (folder, _spec((folder / name).read_text().splitlines()))]
        for entry in sorted(folder.iterdir()):
            relative = str(entry.relative_to(root)) + ("/" if entry.is_dir() else "")
            if any(spec.match_file(str(entry.relative_to(base))) for base, spec in specs):
                continue
            if secret.match_file(relative) and not included.match_file(relative):
                upload.secrets.append(relative.rstrip("/"))
                continue
            if entry.is_symlink():
                target = entry.resolve()
                if target != root and root not in target.parents:
                    upload.outside_links.append((relative.rstrip("/"), str(target)))
            if entry.is_dir():  # as Ray's packager does, linked folders too (a link back up is not followed)
                real = entry.resolve()
                if real not in seen:
                    walk(entry, specs, seen | {real})
            elif entry.is_file():
                if secret.match_file(relative):
                    upload.included_secrets.append(relative)
                upload.files.append((relative, entry.stat().st_size))

    walk(root, [(root, _spec(patterns))], frozenset({root}))
    upload.excludes += [f"/{path}" for path in upload.secrets]  # so that Ray leaves them out too
    return upload


def submit_main(argv: list[str]) -> int:
    """``lightray submit [options] -- ENTRYPOINT``: state and check the upload, then run ``ray job submit``.

    Runs on the driver; returns ``ray job submit``'s exit status (2 for bad input).
    """
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        raise MisconfigurationError(
            "give the job's command after `--`, e.g. `lightray submit -- lightray fit --config run.yaml`"
        )
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="lightray submit", description=__doc__, allow_abbrev=False)
    parser.add_argument("--working-dir", default=None, help="folder to upload (default: the runtime_env's, or .)")
    parser.add_argument("--runtime-env", default=None, help="a runtime_env YAML file (its excludes are kept)")
    parser.add_argument("--runtime-env-json", default=None, help="a runtime_env as JSON")
    parser.add_argument("--exclude", action="append", default=[], help="another gitwildmatch pattern to leave out")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        help="send files matching this pattern although they look like credentials",
    )
    parser.add_argument("--allow-links-outside", action="store_true",
                        help="send what symbolic links outside the working_dir point to")  # fmt: skip
    parser.add_argument("--max-upload-mib", type=float, default=MAX_UPLOAD_MIB, help="refuse larger uploads")
    parser.add_argument("--dry-run", action="store_true", help="state the upload and the command; submit nothing")
    args, ray_options = parser.parse_known_args(argv[:split])
    runtime_env = _load_runtime_env(args.runtime_env, args.runtime_env_json)
    working_dir = args.working_dir or runtime_env.get("working_dir") or "."
    if "://" in str(working_dir):  # a remote package (s3://...zip): Ray uploads nothing
        upload = None
    else:
        upload = plan_upload(working_dir, [*runtime_env.get("excludes", []), *args.exclude], args.include)
        print("\n".join(f"lightray submit: {line}" for line in upload.describe().splitlines()), file=sys.stderr)
        if upload.outside_links and not args.allow_links_outside:
            links = ", ".join(f"{link} -> {target}" for link, target in upload.outside_links[:8])
            raise MisconfigurationError(
                f"the working_dir has symbolic links that point outside it ({links}); Ray's packager follows them "
                "and would send what they point to. Remove them, leave them out with --exclude PATTERN, or pass "
                "--allow-links-outside to send their contents."
            )
        if upload.size > args.max_upload_mib * 2**20:
            largest = sorted(upload.files, key=lambda f: -f[1])[:5]
            raise MisconfigurationError(
                f"the upload is {_human(upload.size)}, above --max-upload-mib {args.max_upload_mib:g}. Largest files: "
                + ", ".join(f"{path} ({_human(size)})" for path, size in largest)
                + ". Leave them out with --exclude PATTERN or a .rayignore, put data on shared storage (s3://, "
                "gs://), or raise --max-upload-mib."
            )
        runtime_env.update(working_dir=str(upload.working_dir), excludes=upload.excludes)
    command = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", *ray_options,
               "--runtime-env-json", json.dumps(runtime_env), *argv[split:]]  # fmt: skip
    if args.dry_run:
        print("lightray submit: would run: ray " + shlex.join(command[3:]), file=sys.stderr)
        return 0
    return subprocess.call(command)


def _spec(lines: list[str]) -> Any:
    """Git's ignore-file rules, as Ray applies them (pathspec, a Ray dependency; "gitignore" in pathspec >= 1)."""
    from pathspec import PathSpec

    try:
        return PathSpec.from_lines("gitignore", lines)
    except LookupError:
        return PathSpec.from_lines("gitwildmatch", lines)


def _load_runtime_env(path: str | None, text: str | None) -> dict[str, Any]:
    import yaml

    if path and text:
        raise MisconfigurationError("give --runtime-env or --runtime-env-json, not both")
    try:
        if path:
            with open(path) as f:
                env = yaml.safe_load(f) or {}
        else:
            env = json.loads(text) if text else {}
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as err:
        raise MisconfigurationError(f"cannot read the runtime_env {path or text!r}: {err}") from None
    if not isinstance(env, dict):
        raise MisconfigurationError(f"the runtime_env must be a mapping (working_dir:, pip:, ...), got {env!r}")
    return env


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"
