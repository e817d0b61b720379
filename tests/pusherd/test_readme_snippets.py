"""Every JavaScript and Python snippet of README.md works as written against a live pusherd.

The README's shell line (``PUSHERD_APP_ID=… pusherd --port 8080``) says how pusherd is
started: the same environment is used, on port 0. Its ``.env`` block gives the values a
Laravel frontend sees as ``VITE_REVERB_*`` (and ``VITE_PUSHER_*`` for the pusher
broadcaster, as the README says). Each JavaScript snippet is run unchanged in Node with the
real pusher-js and Laravel Echo of ``protocol_tests/node_modules`` (the only edit: the port
8080 becomes the live port); it subscribes to ``orders`` and must receive the event that the
README's Python snippet, run unchanged with the real ``pusher`` SDK, triggers.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.pusherd.test_server_process import pusherd_process
from tests.support.pusherd_process import REPO_ROOT

README = REPO_ROOT / "README.md"
NODE_MODULES = REPO_ROOT / "protocol_tests" / "node_modules"
TIMEOUT = 20.0

# The Node side: browser globals pusher-js and Echo expect, Vite's import.meta.env, then
# the snippet verbatim, then a check through the object the snippet created.
HARNESS = """
globalThis.window = globalThis;
const Pusher = (await import('pusher-js')).default;
window.Pusher = Pusher;
const Echo = (await import('laravel-echo')).default;
import.meta.env = JSON.parse(process.env.README_VITE_ENV);
const report = (value) => process.stdout.write(JSON.stringify(value) + '\\n');
// ---- README snippet ----
%s
// ---- check ----
if (window.Echo) {
  const channel = window.Echo.channel('orders');
  channel.subscribed(() => report({ subscribed: true }));
  channel.listen('.order.shipped', (data) => {
    report({ event: data });
    window.Echo.disconnect();
    process.exit(0);
  });
} else {
  const channel = pusher.subscribe('orders');
  channel.bind('pusher:subscription_succeeded', () => report({ subscribed: true }));
  channel.bind('order.shipped', (data) => {
    report({ event: data });
    pusher.disconnect();
    process.exit(0);
  });
}
"""


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)


def _server_environment() -> dict[str, str]:
    """The variables of the README's ``… pusherd --port 8080`` line."""
    for block in _blocks("sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if "pusherd" in words and any("=" in w for w in words):
                return dict(w.split("=", 1) for w in words[: words.index("pusherd")])
    raise AssertionError("README has no `VAR=… pusherd` line")


def _vite_environment(port: int) -> dict[str, str]:
    """The README's Laravel .env values as Vite exposes them to the frontend."""
    (dotenv,) = _blocks("dotenv")
    values = dict(line.split("=", 1) for line in dotenv.splitlines() if "=" in line)
    values["REVERB_PORT"] = str(port)
    env = {}
    for name in ("APP_KEY", "HOST", "PORT", "SCHEME"):
        env[f"VITE_REVERB_{name}"] = values[f"REVERB_{name}"]
        env[f"VITE_PUSHER_{name}"] = values[f"REVERB_{name}"]
    return env


def test_the_readme_has_the_snippets_this_test_runs() -> None:
    # pusher-js, Echo with reverb, Echo with pusher, Echo with the HTTP fallback allowed
    assert len(_blocks("js")) == 4
    assert len(_blocks("python")) == 1
    assert _server_environment()["PUSHERD_APP_KEY"] == "my-key"


@pytest.mark.parametrize("index", range(len(_blocks("js"))))
async def test_a_readme_javascript_snippet_receives_what_the_python_snippet_triggers(
    index: int, tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is required (scripts/test.sh installs it)"
    (python_snippet,) = _blocks("python")
    async with pusherd_process("--port", "0", env=_server_environment()) as running:
        port = running.port
        # Beside the script, so that `import 'pusher-js'` resolves to the pinned clients.
        (tmp_path / "node_modules").symlink_to(NODE_MODULES.resolve())
        script = tmp_path / "snippet.mjs"
        script.write_text(HARNESS % _blocks("js")[index].replace("8080", str(port)))
        process = await asyncio.create_subprocess_exec(
            node, str(script), cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "README_VITE_ENV": json.dumps(_vite_environment(port))})
        assert process.stdout is not None and process.stderr is not None

        async def report() -> dict[str, Any]:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
            if not line:
                errors = (await process.stderr.read()).decode(errors="replace")  # type: ignore[union-attr]
                raise AssertionError(f"the snippet exited early:\n{errors}")
            result = json.loads(line)
            assert isinstance(result, dict)
            return result

        try:
            assert await report() == {"subscribed": True}
            namespace: dict[str, Any] = {}
            code = python_snippet.replace("8080", str(port))
            await asyncio.to_thread(exec, compile(code, "README.md (python)", "exec"), namespace)
            assert await report() == {"event": {"id": 42}}
            assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
