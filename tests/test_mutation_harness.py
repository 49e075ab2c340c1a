"""The `make mutation` harness (tools/mutation.py): its module table points at real files, and
the committed report (docs/mutation.json) covers only modules of that table."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("mutation_harness", ROOT / "tools/mutation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_and_its_tests_exist(harness) -> None:
    for name, (source, tests) in harness.MODULES.items():
        assert (ROOT / "src/advaug" / source).is_file(), name
        assert tests and all((ROOT / t).is_file() for t in tests), name


def test_scratch_copy_scopes_mutmut_to_one_module(harness, tmp_path) -> None:
    where = harness._scratch("pgd", tmp_path)
    config = (where / "pyproject.toml").read_text()
    assert 'only_mutate = ["src/advaug/attacks/pgd.py"]' in config
    assert 'pytest_add_cli_args_test_selection = ["tests/attacks/test_pgd.py"]' in config
    assert "--hypothesis-profile=mutation" in config
    # a loaded machine must not turn survivors into timeouts (which count as killed)
    assert f"timeout_multiplier = {harness.TIMEOUT_MULTIPLIER}" in config
    assert harness.TIMEOUT_MULTIPLIER >= 100
    assert (
        "timeout_multiplier = 30.0"
        in harness._scratch("pgd", tmp_path / "b", 30).joinpath("pyproject.toml").read_text()
    )
    assert (where / "src/advaug/attacks/pgd.py").read_text() == (
        ROOT / "src/advaug/attacks/pgd.py"
    ).read_text()


def test_unknown_module_is_a_one_line_error(harness, capsys) -> None:
    with pytest.raises(SystemExit):
        harness.main(["--modules", "nope"])
    assert "unknown module(s) ['nope']" in capsys.readouterr().err


def test_committed_report_matches_the_table(harness) -> None:
    report = json.loads((ROOT / "docs/mutation.json").read_text())
    assert report["tool"] == "mutmut" and report["version"]
    assert set(report["modules"]) <= set(harness.MODULES)
    for name, result in report["modules"].items():
        assert result["source"] == f"src/advaug/{harness.MODULES[name][0]}"
        killed = result["counts"].get("killed", 0) + result["counts"].get("timeout", 0)
        assert len(result["survivors"]) == result["counts"].get("survived", 0), name
        assert killed + len(result["survivors"]) > 0, name


def test_functions_scope_the_score_and_the_survivors(harness, tmp_path, monkeypatch) -> None:
    """--functions: only the selected functions' mutants count; the report says which."""
    meta = tmp_path / "mutants/src/advaug/report/stats.py.meta"
    meta.parent.mkdir(parents=True)
    key = "advaug.report.stats.x_{}__mutmut_{}".format
    codes = {key("wilson", 1): 1, key("wilson", 2): 0, key("unpack_outcomes", 1): 0,
             key("unpack_outcomes", 2): None}  # fmt: skip
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    monkeypatch.setattr(
        harness, "_mutmut", lambda where, *args: type("R", (), {"stdout": args[-1]})
    )
    scoped = harness._collect("stats", tmp_path, ["*x_wilson__*"])
    assert scoped["counts"] == {"killed": 1, "survived": 1} and scoped["score"] == 50.0
    assert [s["mutant"] for s in scoped["survivors"]] == [key("wilson", 2)]
    assert scoped["functions"] == ["*x_wilson__*"]
    whole = harness._collect("stats", tmp_path)
    assert whole["counts"] == {"killed": 1, "not checked": 1, "survived": 2}
    assert whole["score"] == 33.3 and "functions" not in whole


def _imports_of(path: Path) -> set[tuple[str, str]]:
    """(module, name) for every ``from module import name``, and (module, "") for every
    ``import module`` in one file."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {(node.module, a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {(a.name, "") for a in node.names}
    return found


def test_every_module_is_imported_by_its_tests(harness) -> None:
    """mutmut stops with "could not find any test case" when no listed test reaches the
    module: at least one listed file must import it, or a name it defines via its package."""
    for name, (source, tests) in harness.MODULES.items():
        dotted = "advaug." + source.removesuffix(".py").replace("/", ".")
        module = importlib.import_module(dotted)
        imports = set().union(*(_imports_of(ROOT / t) for t in tests))
        reached = any(
            mod == dotted
            or mod.startswith(dotted + ".")
            or (mod, leaf) == (dotted.rpartition(".")[0], dotted.rpartition(".")[2])
            or getattr(getattr(module, leaf, None), "__module__", None) == dotted
            for mod, leaf in imports
            if mod.startswith("advaug")
        )
        assert reached, f"{name}: none of {tests} imports {dotted}"


def test_a_result_keeps_what_others_wrote_during_the_run(harness, tmp_path) -> None:
    """The report is read afresh when a module's result is written: a module that another run
    (or a merge) added while this one ran is kept, and the file is never left half-written."""
    path = tmp_path / "mutation.json"
    harness._record(path, "pgd", {"score": 90.0}, "3.8.1")
    first = json.loads(path.read_text())
    assert (first["tool"], first["version"]) == ("mutmut", "3.8.1")
    assert first["modules"] == {"pgd": {"score": 90.0}}
    first["modules"]["fgsm"] = {"score": 80.0}  # written by someone else meanwhile
    path.write_text(json.dumps(first))
    harness._record(path, "pgd", {"score": 95.0}, "3.8.1")
    assert json.loads(path.read_text())["modules"] == {
        "pgd": {"score": 95.0}, "fgsm": {"score": 80.0},
    }  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mutation.json", "mutation.json.lock"]


def test_results_written_at_once_keep_every_module(harness, tmp_path) -> None:
    """Runs that finish together take turns on the report: none loses another's module."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "mutation.json"
    names = [f"m{i}" for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: harness._record(path, n, {"score": 1.0}, "3.8.1"), names))
    assert sorted(json.loads(path.read_text())["modules"]) == sorted(names)
