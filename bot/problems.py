"""One exception shape for checks that report every problem at once, not just the first."""

from __future__ import annotations


class Problems(ValueError):
    """`problems` has one line per problem; the message is `heading` (if any) and then the lines."""

    heading = ""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = [f"  - {p}" for p in problems] if self.heading else problems
        super().__init__("\n".join([self.heading, *lines] if self.heading else lines))
