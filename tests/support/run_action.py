"""Runs a composite GitHub Actions action (action.yml) the way the runner does, for tests.

    run_action.py ACTION_DIR OUTPUTS_JSON INPUT=VALUE...

What a runner does for a composite action, and this does too: inputs with their
defaults; `${{ inputs.* }}`, `${{ steps.ID.outputs.* }}`, `${{ runner.* }}` and
`${{ github.action_path }}` in `run`, `env`, `working-directory`, `if` and the action's
outputs; each `run` step as `bash --noprofile --norc -eo pipefail FILE` with
GITHUB_ACTION_PATH, a fresh GITHUB_OUTPUT file per step (read back as that step's
outputs) and GITHUB_PATH (prepended to PATH for the steps after). A `uses:` step is
another action, which only a runner can fetch: it is reported and skipped. The first
failing step ends the action with its exit code; the action's outputs are written to
OUTPUTS_JSON in every case.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def lookup(name, ctx):
    value = ctx
    for part in name.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part, "")
    return value if isinstance(value, str) else ("" if value is None else str(value))


def evaluate(expr, ctx):
    """`a.b` or `'literal'` (a string); `x == y`, `x != y`, joined by `&&` (a boolean);
    `a || b`, the first that is not empty."""
    def term(text):
        text = text.strip()
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1]
        return lookup(text, ctx)

    def clause(text):
        for op, test in (("!=", lambda a, b: a != b), ("==", lambda a, b: a == b)):
            if op in text:
                left, right = text.split(op, 1)
                return test(term(left), term(right))
        return bool(term(text))

    if "||" in expr:
        return next((v for v in (evaluate(part, ctx) for part in expr.split("||")) if v), "")
    clauses = expr.split("&&")
    if len(clauses) == 1 and "==" not in expr and "!=" not in expr:
        return term(expr)
    return all(clause(c) for c in clauses)


def substitute(text, ctx):
    return EXPR.sub(lambda m: str(evaluate(m.group(1), ctx)), str(text))


def main():
    action_dir, outputs_path = sys.argv[1], sys.argv[2]
    given = dict(arg.split("=", 1) for arg in sys.argv[3:])
    with open(os.path.join(action_dir, "action.yml")) as f:
        action = yaml.safe_load(f)
    inputs = {}
    for name, spec in (action.get("inputs") or {}).items():
        if name in given:
            inputs[name] = given.pop(name)
        elif spec.get("required") and "default" not in spec:
            sys.exit(f"input {name} is required")
        else:
            inputs[name] = str(spec.get("default", ""))
    if given:
        sys.exit(f"unknown inputs: {sorted(given)}")
    ctx = {
        "inputs": inputs,
        "steps": {},
        "runner": {"os": "Linux", "arch": "X64"},
        "github": {"action_path": action_dir},
    }
    workspace = os.getcwd()
    path_file = tempfile.NamedTemporaryFile(delete=False).name
    status = 0
    for index, step in enumerate(action["runs"]["steps"]):
        condition = step.get("if")
        if condition is not None and not evaluate(EXPR.sub(lambda m: m.group(1), condition), ctx):
            continue
        if "uses" in step:
            print(f"run_action: skipping `uses: {step['uses']}` (only a runner fetches actions)", file=sys.stderr)
            continue
        output_file = tempfile.NamedTemporaryFile(delete=False).name
        env = dict(os.environ)
        with open(path_file) as f:
            added = [line.strip() for line in f if line.strip()]
        env["PATH"] = os.pathsep.join(list(reversed(added)) + [env["PATH"]])
        env.update(
            GITHUB_ACTION_PATH=action_dir,
            GITHUB_OUTPUT=output_file,
            GITHUB_PATH=path_file,
            GITHUB_WORKSPACE=workspace,
        )
        for key, value in (step.get("env") or {}).items():
            env[key] = substitute(value, ctx)
        cwd = os.path.join(workspace, substitute(step.get("working-directory", "."), ctx))
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
            script.write(substitute(step["run"], ctx))
        if not os.path.isdir(cwd):
            # The runner fails such a step before its script starts.
            print(f"run_action: working-directory {cwd} does not exist", file=sys.stderr)
            status = 1
        else:
            status = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", script.name], env=env, cwd=cwd
            ).returncode
        outputs = {}
        with open(output_file) as f:
            for line in f:
                if "=" in line:
                    key, value = line.rstrip("\n").split("=", 1)
                    outputs[key] = value
        ctx["steps"][step.get("id", f"step{index}")] = {"outputs": outputs}
        if status != 0:
            break
    result = {
        name: substitute(spec.get("value", ""), ctx) for name, spec in (action.get("outputs") or {}).items()
    }
    with open(outputs_path, "w") as f:
        json.dump(result, f)
    sys.exit(status)


if __name__ == "__main__":
    main()
