"""A comparison kept as a run of its own (job "compare", `trainlab compare --record`): a pair's verdict and both
sides' runs, or a ranking's verdict and every candidate's runs, with the full result as comparison.json.

Both kinds of result flow in here: ``pair.py`` (A against B) and ``ranking.py`` (many against the best).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainlab.experiments.pair import Comparison

if TYPE_CHECKING:
    from trainlab.experiments.ranking import Ranking
    from trainlab.runs import Record


@dataclass(frozen=True)
class ComparisonRecord:
    run_id: str
    where: list[str]
    tracking_failures: dict[str, str]


def record_comparison(result: Comparison | Ranking, record: Record, *, trackers: Sequence[str] = ("mlflow", "wandb"),
                      warn: Callable[[str], None] | None = None) -> ComparisonRecord:
    """The comparison as a run of its own (job "compare"): its verdict, both sides' run ids, the full result."""
    from trainlab.run_setup import job_run

    data = result.as_dict()
    sides = [data["a"], data["b"]] if isinstance(result, Comparison) else data["rows"]
    with job_run("compare", sides[0]["experiment"], record.uri, trackers, warn) as run:
        tags = {"job": "compare", "compare_metric": result.metric, "verdict": result.verdict[:5000]}
        if isinstance(result, Comparison):
            tags.update({"compare_a": ",".join(data["a"]["runs"]), "compare_b": ",".join(data["b"]["runs"]),
                         "compare_a_mlflow": ",".join(data["a"]["mlflow_ids"]),
                         "compare_b_mlflow": ",".join(data["b"]["mlflow_ids"]), "outcome": result.outcome})
            chosen = next(d for d in result.differences if d.metric == result.metric)
            run.log_summary({"difference": chosen.difference, "ci_low": chosen.ci_low, "ci_high": chosen.ci_high,
                             "p_value": chosen.p_value, "a": chosen.a, "b": chosen.b})
        else:
            tags["compared_runs"] = ",".join(r for row in data["rows"] for r in row["runs"])[:5000]
            run.log_summary({"candidates": float(len(result.rows)),
                             "indistinguishable_from_best": float(sum(r.indistinguishable for r in result.rows[1:]))})
        run.set_tags(tags)
        run.log_params({"metric": result.metric, "alpha": str(result.alpha)})
        run.log_dict("comparison.json", data)
    return ComparisonRecord(run.info.run_id, run.where(), dict(run.failures))
