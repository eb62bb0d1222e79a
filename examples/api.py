"""MutateNN from Python: a small campaign on the bundled digits CNN, its scores, and the
images that kill the most mutants.

    .venv/bin/python examples/api.py [OUT_DIR]
"""
import sys

from mutatenn import api

CONFIG = {
    "model": {"spec": "digits"},
    "images": {"spec": "digits:50"},
    "mutants": {"operators": {"replace_activation_with_tanh": "all", "remove_activation": "all",
                              "tir_lt_to_le": "first"}},
    "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
    "kill": {"criterion": "top1_agreement < 1.0"},
}

run = api.run_campaign(CONFIG, out=sys.argv[1] if len(sys.argv) > 1 else None, jobs=2)
print(run.score_table().to_string(index=False))
print()
print(run.verdicts[["mutant_id", "stack", "verdict", "top1_agreement"]].to_string(index=False))
print()
killers = run.kill_matrix.groupby("image")["killed_by_image"].sum().sort_values(ascending=False)
print("images that kill the most mutants:", ", ".join(f"{i} ({int(n)})" for i, n in killers.head(3).items()))
print(f"run folder: {run.path}")
