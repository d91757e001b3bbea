"""The front door and the docs: the README has the shape of a front page, every relative link resolves, every code
fence closes, and user-facing text never speaks of how the project was made."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import yaml

from porter_dev import REPO_ROOT
from porter_identity import cli
from porter_identity.iam import inventory

README = REPO_ROOT / "README.md"
PAGES = [
    README,
    REPO_ROOT / "CONTRIBUTING.md",
    REPO_ROOT / "CHANGELOG.md",
    *sorted((REPO_ROOT / "docs").rglob("*.md")),
]
# Every Markdown file of the repository (the virtualenv and caches are not ours).
MARKDOWN = sorted(p for p in REPO_ROOT.rglob("*.md") if not {".venv", ".cache", ".git", "node_modules"} & set(p.parts))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for target in LINK.findall(page.read_text())]


@pytest.mark.parametrize(("page", "target"), _links(), ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_relative_link_resolves(page: Path, target: str) -> None:
    if re.match(r"^[a-z]+:", target):
        return  # http(s), mailto: not ours to check offline
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.is_relative_to(REPO_ROOT), f"{page.relative_to(REPO_ROOT)} links outside the repository: {target}"
    assert resolved.exists(), f"{page.relative_to(REPO_ROOT)} links to missing {target}"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{page.relative_to(REPO_ROOT)}: no heading #{anchor} in {path}"


def test_links_are_found() -> None:
    assert len(_links()) > 50


def test_readme_is_a_front_page() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 12_000, "the README is the front page; reference material goes to docs/"
    assert "make dev" in text and "make test" in text
    for cloud in ("# AWS (EKS)", "# Azure (AKS", "# GCP (GKE"):
        assert cloud in text, f"Helm values for {cloud}"
    for shown in ("kubectl get sic", "kubectl describe sic", "kubectl identity check"):
        assert shown in text
    assert "denied\nby default" in text or "denied by default" in text
    pages = ("connections", "configuration", "operations", "security", "gitops", "metrics", "rolesets")
    for page in (*pages, "troubleshooting", "api-policy", "performance"):
        assert f"(docs/{page}.md)" in text, f"the README links docs/{page}.md"
    assert "(CONTRIBUTING.md)" in text and "(CHANGELOG.md)" in text


def test_examples_hold_only_kubernetes_objects() -> None:
    for path in sorted(p for p in (REPO_ROOT / "examples").rglob("*") if p.is_file()):
        assert path.suffix == ".yaml", f"{path.name}: examples/ holds only manifests"
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path.name}: not a Kubernetes object"


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def unclosed_fence(text: str) -> int | None:
    """The line (1-based) of a code fence that does not close where its author meant, or None.

    A fence closes on a line of the same character, at least as long, with nothing after it (CommonMark). A fence
    with an info string (```yaml) met inside an open block is the next block's opening: the open one was never
    closed, and everything between renders as code. Markdown shown inside a block needs a longer outer fence."""
    opened: tuple[str, int] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        found = FENCE.match(line)
        if not found:
            continue
        marks, rest = found.groups()
        if opened is None:
            opened = (marks, number)
        elif marks[0] == opened[0][0] and len(marks) >= len(opened[0]):
            if rest.strip():
                return opened[1]
            opened = None
    return opened[1] if opened else None


def test_fence_check_finds_an_unclosed_fence() -> None:
    assert unclosed_fence("```sh\nmake\n```\ntext\n") is None
    assert unclosed_fence("```sh\nmake\n\n## Next\n```yaml\na: 1\n```\n") == 1
    assert unclosed_fence("text\n```sh\nmake\n") == 2
    assert unclosed_fence("````md\n```\n````\n") is None


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_code_fence_closes(page: Path) -> None:
    line = unclosed_fence(page.read_text())
    assert line is None, (
        f"{page.relative_to(REPO_ROOT)}:{line}: this code fence never closes (the rest renders as code)"
    )


def test_markdown_files_are_found() -> None:
    names = {str(p.relative_to(REPO_ROOT)) for p in MARKDOWN}
    assert {"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "docs/troubleshooting.md"} <= names


# Words about how the project was made, which mean nothing to a user. AWS's own terms that contain "session" (role
# sessions, session tags, sts:TagSession, RoleSessionName) are removed before the check.
MAKING = re.compile(
    r"\bthe seed\b|\bseed's\b|\bseed inventory\b|\bissues? #?\d+|\ba fast hour\b|\bmood\b|\bsessions?\b",
    re.IGNORECASE,
)
AWS_SESSION_TERMS = re.compile(
    r"(role|assumed-role) sessions?|sessions? (tags?|names?|policy|policies|duration)|TagSession|RoleSessionName",
    re.IGNORECASE,
)


def words_of_making(text: str) -> list[str]:
    return [m.group(0) for m in MAKING.finditer(AWS_SESSION_TERMS.sub("", text))]


def test_making_words_are_found() -> None:
    assert words_of_making("presets from the seed, as issue 21 said, in a fast hour") == [
        "the seed",
        "issue 21",
        "a fast hour",
    ]
    assert words_of_making("the machine's mood; this session") == ["mood", "session"]
    assert words_of_making("session tags, sts:TagSession, the role session name") == []


def _user_facing_files() -> list[Path]:
    chart = REPO_ROOT / "charts" / "porter-identity"
    files = [*PAGES, *sorted((REPO_ROOT / "crds").glob("*.yaml")), *sorted((chart / "crds").glob("*.yaml"))]
    files += [chart / "values.yaml", chart / "Chart.yaml", chart / "README.md", chart / "templates" / "NOTES.txt"]
    files += sorted((REPO_ROOT / "examples").rglob("*.yaml")) + sorted((REPO_ROOT / "sandbox").glob("*.yaml"))
    return files


@pytest.mark.parametrize("path", _user_facing_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_user_facing_files_do_not_speak_of_how_the_project_was_made(path: Path) -> None:
    assert not words_of_making(path.read_text()), f"{path.relative_to(REPO_ROOT)}: {words_of_making(path.read_text())}"


def _cli_output(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main(list(argv))
    return out.getvalue()


def test_cli_help_and_inventory_do_not_speak_of_how_the_project_was_made() -> None:
    commands = ["run", "crds", "inventory", "diff", "check", "dev", "export", "import"]
    texts = {"--help": _cli_output("--help")} | {c: _cli_output(c, "--help") for c in commands}
    texts["inventory"] = _cli_output("inventory")
    [first, *_] = inventory.from_presets(None)
    marked = inventory.Difference("S3ObjectAccess", "arn:aws:s3:::*/*", "arn:aws:s3:::logs/*", inventory.BUCKET_SCOPED)
    texts["inventory --live"] = inventory.render_live([inventory.LiveRole(first, (), (marked,))])
    texts["differences"] = " ".join([inventory.SET_OPERATOR, inventory.NOT_ON_PURPOSE])
    assert all(texts.values()), [name for name, text in texts.items() if not text]
    for name, text in texts.items():
        assert not words_of_making(text), f"porter-identity {name}: {words_of_making(text)}"


INVENTORY_PAGE = REPO_ROOT / "docs" / "iam-inventory.md"


def test_the_inventory_page_is_what_the_presets_render() -> None:
    """docs/iam-inventory.md is `porter-identity inventory` under a short introduction: regenerate it with
    `porter-identity inventory` when a preset changes."""
    page = INVENTORY_PAGE.read_text()
    rendered = inventory.render(inventory.from_presets(None))
    assert page.startswith("# Porter's IAM inventory\n")
    assert page.endswith(rendered), "docs/iam-inventory.md is stale: rerun `porter-identity inventory`"
