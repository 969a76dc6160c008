#!/usr/bin/env python3
"""Validate every shipped Envoy bootstrap with `envoy --mode validate`.

Shipped configs carry `${NAME}` / `${NAME:-default}` placeholders (ports, paths) that tests and
the demo fill in at run time; here they are rendered with harmless values first, through the
same renderer the tests use, so what is validated is what runs. A bootstrap that loads the
native dynamic module is validated with the module built by `make native` on Envoy's search
path, and fails if Envoy reports an ABI-version mismatch: the module is built for one Envoy
minor version. A bootstrap that ships the upstream TLS block commented out (README "TLS to
Alternator") is validated twice: as shipped, and with the block enabled as an operator enables
it, against a real CA bundle.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

from harness.envoy import (
    envoy_binary,
    has_upstream_tls,
    native_module_dir,
    render_template,
    validation_values,
    with_upstream_tls,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def bootstraps():
    """(path, form, template text) of every shipped bootstrap form."""
    for path in sorted((ROOT / "envoy").rglob("*.yaml")) + sorted((ROOT / "deploy").rglob("envoy*.yaml")):
        text = path.read_text()
        # Envoy bootstraps only; Istio/Kubernetes manifests are checked elsewhere.
        if "static_resources:" in text and "apiVersion:" not in text:
            yield path, "", text
            if has_upstream_tls(text):
                yield path, " (upstream TLS)", with_upstream_tls(text)


def main() -> int:
    envoy = envoy_binary()
    failures = 0
    count = 0
    for path, form, text in bootstraps():
        count += 1
        rendered = render_template(text, validation_values())
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(rendered)
            tmp = f.name
        native = "dynamic_modules.v3.DynamicModuleFilter" in rendered
        env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(native_module_dir())) if native else None
        try:
            proc = subprocess.run(
                [envoy, "--mode", "validate", "-c", tmp, "--base-id", str(os.getpid() % 60000 + 1000)],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
            )
        finally:
            os.unlink(tmp)
        rel = f"{path.relative_to(ROOT)}{form}"
        output = proc.stdout + proc.stderr
        if native and proc.returncode == 0 and "ABI version v0.2.0 matched" not in output:
            failures += 1
            print(f"INVALID {rel}: Envoy did not confirm the module's ABI version\n{output}")
        elif proc.returncode == 0:
            print(f"valid   {rel}")
        else:
            failures += 1
            print(f"INVALID {rel}\n{proc.stdout}{proc.stderr}")
    print(f"{count - failures} passed, {failures} failed")
    return 1 if failures or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
