"""Rebuild template.html, the page `dvc plots show` fills (.dvc/config: plots.html_template).

It is DVC's own page (dvc_render.html.PAGE_HTML) with the scripts DVC loads from
cdn.jsdelivr.net (dvc_render.vega.VegaRenderer.SCRIPTS) inlined, so the page renders with no
network: an air-gapped clone needs nothing else. The versions are DVC's (a test compares them
with the installed dvc_render); each tarball is checked against its pinned npm integrity. The
builds are the packages' published minified bundles (with the dependencies they bundle, d3
modules among them), unchanged but for the trailing source-map comment.

    python3 vendor/dvc_plots/build.py     # needs npm and the npm registry; no Python packages
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# package, version, file in the tarball (the package's "jsdelivr" entry), npm's dist.integrity
PACKAGES = [
    (
        "vega",
        "5.20.2",
        "package/build/vega.min.js",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
    ),
    (
        "vega-lite",
        "5.2.0",
        "package/build/vega-lite.min.js",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
    ),
    (
        "vega-embed",
        "6.18.2",
        "package/build/vega-embed.min.js",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
    ),
]
# DVC's placeholders: dvc_render replaces them anywhere in the page, so the inlined code must not
# contain them. The scripts placeholder is left out on purpose: it would add the CDN tags back.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")
SOURCE_MAP = re.compile(r"\n?//# sourceMappingURL=\S+\s*$")  # a devtools-only fetch; dropped
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- DVC's plots page, with the scripts it loads from a CDN inlined so that it renders
         offline: {versions} (BSD-3-Clause, vendor/dvc_plots/licenses/).
         Built by vendor/dvc_plots/build.py; do not edit. -->
{scripts}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def fetch(name: str, version: str, integrity: str, workdir: Path) -> tarfile.TarFile:
    filename = subprocess.run(
        ["npm", "pack", "--silent", f"{name}@{version}"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    blob = (workdir / filename).read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
    if digest != integrity:
        raise SystemExit(f"{name}@{version}: integrity {digest}, expected {integrity}")
    return tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")


def script(name: str, version: str, code: str) -> str:
    code = SOURCE_MAP.sub("", code).rstrip()
    bad = [s for s in ("</script", "<!--", *PLACEHOLDERS) if s in code.lower()]
    if bad:
        raise SystemExit(f"{name}@{version} contains {bad}: it cannot be inlined as is")
    return f"    <script>/* {name}@{version} */\n{code}\n    </script>"


def main() -> None:
    scripts = []
    (HERE / "licenses").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, member, integrity in PACKAGES:
            with fetch(name, version, integrity, Path(tmp)) as tar:
                code = tar.extractfile(member).read().decode("utf-8")
                license_text = tar.extractfile("package/LICENSE").read().decode("utf-8")
            (HERE / "licenses" / f"{name}.LICENSE").write_text(license_text, encoding="utf-8")
            scripts.append(script(name, version, code))
    versions = ", ".join(f"{name} {version}" for name, version, _, _ in PACKAGES)
    page = PAGE.replace("{versions}", versions).replace("{scripts}", "\n".join(scripts))
    out = HERE / "template.html"
    out.write_text(page, encoding="utf-8")
    print(f"{out}: {out.stat().st_size:,} bytes ({versions})")


if __name__ == "__main__":
    main()
