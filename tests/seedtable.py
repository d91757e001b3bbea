"""Parse the seed's role inventory, and our rendered inventory, into comparable tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEED_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "seeds" / "000_6288a4b5e66c7672.txt"

SUMMARY_HEADER = "| Role | Created by | Assumable from outside | Purpose |"
STATEMENT_HEADER = "| Statement | Resource path | Actions | Condition |"

# The seed lost the separators between actions, and an action name's tail plus the next
# service can look like another service ("GetRoleiam:"), so only known prefixes split.
SERVICES = (
    "account",
    "acm",
    "aps",
    "autoscaling",
    "ce",
    "cloudformation",
    "cloudtrail",
    "cloudwatch",
    "ec2",
    "ecr",
    "ecr-public",
    "eks",
    "eks-auth",
    "elasticache",
    "elasticfilesystem",
    "elasticloadbalancing",
    "events",
    "freetier",
    "guardduty",
    "iam",
    "inspector2",
    "kms",
    "logs",
    "pricing",
    "rds",
    "s3",
    "secretsmanager",
    "servicequotas",
    "sns",
    "sqs",
    "ssm",
    "sts",
    "tag",
    "wafv2",
)
_ACTION_START = re.compile("(?=(?:" + "|".join(sorted(map(re.escape, SERVICES), key=len, reverse=True)) + "):)")
_SAME_ACTIONS = re.compile(r"\(same (?:actions )?as (?:in )?(\S+)\u2019s (\S+) statement\)")
_SAME_RESOURCES = "(same resources as above)"
_ROLE_NAME = re.compile(r"(porter-[a-z0-9*<>-]+)$")

Row = tuple[str, tuple[str, ...], tuple[str, ...], str]  # sid, resources, actions, condition text


@dataclass(frozen=True)
class Role:
    name: str
    summary: str
    trusted_by: str
    rows: list[Row]


@dataclass(frozen=True)
class Inventory:
    summary: list[tuple[str, ...]]  # role, created by, assumable from outside, purpose
    roles: dict[str, Role]


def split_seed_actions(cell: str) -> tuple[str, ...]:
    return tuple(part for part in _ACTION_START.split(cell) if part)


def split_seed_resources(cell: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"(?=arn:)", cell) if part)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def _table(lines: list[str], header: str, start: int = 0) -> tuple[list[list[str]], int]:
    """Rows of the first table whose header ends a line at or after `start`, and the index after it."""
    i = next(n for n in range(start, len(lines)) if lines[n].endswith(header)) + 2
    rows = []
    while i < len(lines) and " | " in lines[i]:
        rows.append(_cells(lines[i]))
        i += 1
    return rows, i


def _parse(text: str, seed: bool) -> Inventory:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    summary, _ = _table(lines, SUMMARY_HEADER)
    roles: dict[str, Role] = {}
    for i, line in enumerate(lines):
        if not line.startswith("Assumable by "):
            continue
        match = _ROLE_NAME.search(lines[i - 2])
        assert match, f"no role name before {line!r}"
        cells, _ = _table(lines, STATEMENT_HEADER, i)
        rows = [_row(cell, seed) for cell in cells]
        roles[match.group(1)] = Role(match.group(1), lines[i - 1], line, rows)
    return Inventory([tuple(row) for row in summary], _resolve(roles))


def _row(cells: list[str], seed: bool) -> Row:
    sid, resources, actions, condition = cells
    if seed:
        return sid, split_seed_resources(resources), split_seed_actions(actions), condition
    return sid, tuple(resources.split("<br>")), tuple(actions.split(", ")), condition


def _resolve(roles: dict[str, Role]) -> dict[str, Role]:
    """Replace the seed's "(same ... as ...)" cells with what they refer to."""
    for role in roles.values():
        for n, (sid, resources, actions, condition) in enumerate(role.rows):
            if resources == (_SAME_RESOURCES,):
                resources = role.rows[n - 1][1]
            if len(actions) == 1 and (same := _SAME_ACTIONS.fullmatch(actions[0])):
                other, other_sid = same.groups()
                actions = next(row[2] for row in roles[other].rows if row[0] == other_sid)
            role.rows[n] = (sid, resources, actions, condition)
    return roles


def parse_seed(text: str | None = None) -> Inventory:
    return _parse(SEED_PATH.read_text(encoding="utf-8") if text is None else text, seed=True)


def parse_inventory(text: str) -> Inventory:
    """Our rendered Markdown: resources joined by <br>, actions by ", "."""
    return _parse(text, seed=False)
