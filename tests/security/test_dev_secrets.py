"""Dev secrets on a shared machine: the OpenBao root token and `make run`'s settings files.

Another local user must never read them: the root token is on no process's command line (every
user can read /proc/<pid>/cmdline) and in no log, and every file that holds a secret is private
from the moment it exists (created 0600, never chmod'ed afterwards, never rewritten in place).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from raxx_devstack import servers

pytestmark = pytest.mark.integration


def _every_command_line() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return lines


def test_openbao_root_token_is_on_no_command_line_and_in_no_log(tmp_path: Path) -> None:
    bao = servers.start_openbao(tmp_path / "bao")
    try:
        token = bao.extra["token"]
        works = httpx.get(f"{bao.url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token})
        assert works.status_code == 200
        assert "root" in works.json()["data"]["policies"]
        own = (Path("/proc") / str(bao.process.pid) / "cmdline").read_bytes()
        assert token.encode() not in own
        assert not [line for line in _every_command_line() if token in line]
        # the dev server prints the token it started with (its banner may reach the log a moment
        # after the API answers): that one must be dead
        deadline = time.monotonic() + 10
        while True:
            log = (tmp_path / "bao" / "openbao.log").read_text()
            printed = re.findall(r"Root Token: (\S+)", log)
            if printed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert token not in log
        assert printed, log
        for old in printed:
            dead = httpx.get(f"{bao.url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": old})
            assert dead.status_code == 403, f"the token in the log still works: {dead.text}"
        # the banner's unseal key can mint a new root token (sys/generate-root): private log
        assert "Unseal Key" in log
        assert (tmp_path / "bao" / "openbao.log").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "bao").stat().st_mode & 0o777 == 0o700
        # and no token helper file keeps a copy in the server's HOME
        assert not (tmp_path / "bao" / ".vault-token").exists()
    finally:
        bao.stop()


# Runs in a child interpreter: an audit hook cannot be removed, so it must not stay in pytest's.
# With umask 0, it stats every file under the target directory at every audited event (each
# open, chmod, rename ...) and reports any moment at which a file there that held one of the
# secrets was group/other-readable.
_WATCH = r"""
import json, os, stat, sys
from pathlib import Path
target = Path(sys.argv[1])
SECRETS = ("s.secret", "s.other", "s.new-token")
seen = []
busy = []
def hook(event, args):
    if busy:  # our own listing raises events too
        return
    busy.append(1)
    try:
        for dirpath, _, files in os.walk(target):
            for name in files:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if not (stat.S_ISREG(st.st_mode) and st.st_mode & 0o077):
                    continue
                try:
                    text = open(os.path.join(dirpath, name)).read()
                except OSError:
                    continue
                if any(secret in text for secret in SECRETS):
                    seen.append([event, name, oct(st.st_mode & 0o777)])
    finally:
        busy.clear()
os.umask(0)
sys.addaudithook(hook)
exec(sys.stdin.read())
hook("end", ())
print(json.dumps(seen))
"""

_WRITE_ENV = r"""
from raxx_devstack.stack import Service, Stack, _write_dev_env
root = target.parent.parent
stack = Stack(root=root, env={})
stack.run_dir.mkdir(parents=True, exist_ok=True)
svcs = [Service("tier-gate", "tier_gate", 8082, {"TG_VAULT__TOKEN": "s.secret", "TG_X": "a b"}),
        Service("eod-settler", "eod_settler", 8084, {"EOD_VAULT__TOKEN": "s.other"})]
_write_dev_env(stack, svcs)
_write_dev_env(stack, svcs)  # a second run replaces them
"""

_WRITE_TOKEN = r"""
from raxx_devstack.files import write_private
old = target / "root-token"
old.write_text("from an older run")
old.chmod(0o644)
write_private(old, "s.new-token")
"""


def _watched(target: Path, code: str) -> list[list[str]]:
    run = subprocess.run(
        [sys.executable, "-c", _WATCH, str(target)],
        input=code, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return list(json.loads(run.stdout.splitlines()[-1]))


def test_env_files_are_private_from_the_first_byte(tmp_path: Path) -> None:
    env_dir = tmp_path / ".run" / "env"
    exposed = _watched(env_dir, _WRITE_ENV)
    assert exposed == [], f"settings files were readable by others at some point: {exposed}"
    for name in ("tier-gate.env", "eod-settler.env"):
        assert (env_dir / name).stat().st_mode & 0o777 == 0o600
    assert "export TG_X='a b'" in (env_dir / "tier-gate.env").read_text()
    assert not [p.name for p in env_dir.iterdir() if p.name.startswith(".")], "temp files left"


def test_a_secret_file_replaces_a_wider_older_one_without_a_window(tmp_path: Path) -> None:
    target = tmp_path / "openbao"
    target.mkdir()
    exposed = _watched(target, _WRITE_TOKEN)
    assert exposed == [], f"the token was readable by others at some point: {exposed}"
    token = target / "root-token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.read_text() == "s.new-token"
