"""The referee: a figure whose selection read its test subjects is marked LEAKY wherever it is
printed or written (console, summary, grid and comparison files, Markdown, LaTeX, CSV) and is
never ranked (no best, no bold, no difference from the best); commands that report honest
figures refuse the leaky selection; compare as a user meets it."""

import csv
import json
import warnings

import numpy as np
import pytest

from mer_ray.cli import main
from mer_ray.config import ExperimentConfig, parse_override
from mer_ray.data.choice import DataChoice
from mer_ray.methods import load_with_recipe, method_named
from mer_ray.protocols.loso import RunOptions
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY, write_config
from tests.test_first_hour import no_ray  # noqa: F401  (a fixture)

QUICK = [*TINY, "train.max_epochs=2", "train.patience=2", "data.flow=tvl1"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("referee"), per_class=2, flow="tvl1")


# -- 1: a leaky figure is never presented as honest --------------------------------------------

@pytest.mark.parametrize("how", ["--set", "--config"])
def test_compare_refuses_a_leaky_base_before_ray(no_ray, shards, tmp_path, capsys, how):  # noqa: F811
    """`--set train.selection=test` or a config file that says it made every "honest" row
    leaky while labelled honest; compare refuses it in one line and points at --with-leaky."""
    given = ["--set", "train.selection=test"] if how == "--set" else \
        ["--config", str(write_config(tmp_path / "leaky.yaml", ("train.selection=test",)))]
    assert main(["compare", "--methods", "lbptop_svm", "--shards", str(shards.root),
                 "--storage-path", str(tmp_path / "runs"), *given]) == 2
    err = capsys.readouterr().err
    assert "train.selection=test" in err and "--with-leaky" in err
    assert len(err.strip().splitlines()) == 1


def test_a_search_space_cannot_search_the_selection(tmp_path):
    from mer_ray.protocols.search_space import read_space

    space = tmp_path / "space.yaml"
    space.write_text("train.selection: {type: choice, values: [validation, test]}\n")
    with pytest.raises(ValueError, match="train.selection cannot be searched"):
        read_space(space)


@pytest.mark.parametrize("flat", [True, False])
def test_both_searches_refuse_a_leaky_base_before_ray(no_ray, shards, tmp_path, capsys,  # noqa: F811
                                                      flat):
    space = tmp_path / "space.yaml"
    space.write_text("loss.lambda1: {type: choice, values: [0.1, 0.5]}\n")
    assert main(["sweep", *(["--flat"] if flat else []), "--shards", str(shards.root),
                 "--space", str(space), "--storage-path", str(tmp_path / "runs"),
                 "--set", "train.selection=test"]) == 2
    assert "train.selection=test" in capsys.readouterr().err


def grid_file(tmp_path, rows) -> str:
    import yaml

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"title": "referee grid", "rows": rows}))
    return str(path)


def run_grid(shards, tmp_path, rows, user):
    from mer_ray.protocols.grid import resolve_grid, run_grid_command

    storage = str(tmp_path / "runs")
    given = dict(parse_override(o) for o in user)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = resolve_grid(grid_file(tmp_path, rows), None, DataChoice(shards=shards.root),
                            lambda row: load_with_recipe(None, given, row),
                            {"data.frames", "data.size", "data.flow"}, "g")
        run_grid_command(spec, RunOptions(storage_path=storage, local=True), lambda: None)
    return json.loads((tmp_path / "runs" / "g.json").read_text())


def test_a_grid_marks_its_leaky_row_and_never_ranks_it(shards, tmp_path, capsys):
    user = [*QUICK, "model.method=lbptop_svm"]
    grid = run_grid(shards, tmp_path, [{"label": "honest"},
                                       {"label": "leaky", "set": ["train.selection=test"]}],
                    user)
    honest, leaky = grid["rows"]
    assert (honest["leaky"], leaky["leaky"]) == (False, True)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("leaky"))
    assert "LEAKY" in line and "(best)" not in line
    assert "(best)" in next(x for x in out.splitlines() if x.startswith("honest"))
    assert "LEAKY: its selection read its test subjects" in out


def test_a_grid_row_that_switches_method_gets_the_methods_recipe(shards, tmp_path):
    """A row `model.method=ststnet` trains with STSTNet's recipe; the user's --set (here the
    epochs) still wins over the recipe, and the row's own settings over both."""
    grid = run_grid(shards, tmp_path, [{"label": "svm"},
                                       {"label": "ststnet", "set": ["model.method=ststnet"]},
                                       {"label": "ststnet lr", "set": ["model.method=ststnet",
                                                                       "train.lr=0.002"]}],
                    [*QUICK, "model.method=lbptop_svm"])
    configs = [json.loads((tmp_path / "runs" / r["run"] / "summary.json").read_text())
               ["config"]["train"] for r in grid["rows"]]
    assert configs[1]["lr"] == method_named("ststnet").recipe.lr != configs[0]["lr"]
    assert configs[1]["max_epochs"] == 2 and configs[1]["batch_size"] == 4  # the user's
    assert configs[2]["lr"] == 0.002


def cross_shards(tmp_path):
    source = write_shards(tmp_path / "source", per_class=2, flow="tvl1", seed=1)
    target = write_shards(tmp_path / "target", subjects=("t1", "t2"), per_class=2,
                          flow="tvl1", seed=2)
    return source, target


def test_a_transfer_marks_its_leaky_row(tmp_path, capsys):
    from mer_ray.protocols.transfer import TransferSpec, run_cross

    source, target = cross_shards(tmp_path)
    exp = ExperimentConfig().with_overrides(
        [*QUICK, "model.method=lbptop_svm", "train.selection=test"])
    spec = TransferSpec(exp, DataChoice(shards=source.root),
                        {"casme2": DataChoice(shards=target.root)}, (False,), "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run_cross(spec, source, {"casme2": target},
                         RunOptions(storage_path=str(tmp_path / "runs"), local=True))
    assert rows[0]["leaky"] is True
    out = capsys.readouterr().out
    assert "SAMM -> CASME2 LEAKY" in out and "LEAKY: its selection" in out
    from mer_ray.report import write_report

    text = write_report([tmp_path / "runs" / "x.json"], tmp_path / "report").read_text()
    row = next(x for x in text.splitlines() if "SAMM → CASME2" in x)
    assert "**LEAKY**" in row and "**" not in row.replace("**LEAKY**", "")


GRID = {"grid": "ablation", "title": "t", "rows": [
    {"row": "honest", "run": "a", "uf1": 0.5, "uar": 0.5, "per_fold_mean_uf1": 0.5,
     "per_fold_mean_uar": 0.5, "uf1_ci95": [0.4, 0.6], "uar_ci95": [0.4, 0.6]},
    {"row": "leaky", "run": "b", "uf1": 0.9, "uar": 0.9, "per_fold_mean_uf1": 0.9,
     "per_fold_mean_uar": 0.9, "uf1_ci95": [0.8, 1.0], "uar_ci95": [0.8, 1.0], "leaky": True}]}


def test_the_report_never_bolds_a_leaky_grid_row(tmp_path):
    """A leaky row that scores best is marked, and the bold and "(best)" go to the best honest
    row, in Markdown, LaTeX (a marker macro, explained, booktabs named) and CSV (a column)."""
    from mer_ray.report import write_report

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ablation.json").write_text(json.dumps(GRID))
    report = write_report([tmp_path / "in"], tmp_path / "out", ("md", "latex", "csv"))
    lines = report.read_text().splitlines()
    honest = next(x for x in lines if x.startswith("| honest"))
    leaky = next(x for x in lines if x.startswith("| leaky"))
    assert "**50.00" in honest and "(best)" in honest
    assert "**LEAKY**" in leaky and "**90" not in leaky and "(best)" not in leaky
    tex = (tmp_path / "out" / "tables" / "ablation.tex").read_text()
    assert "**" not in tex and "booktabs" in tex and r"leaky\merleaky{}" in tex
    assert r"\providecommand{\merleaky}" in tex and r"\textbf{90" not in tex
    rows = list(csv.DictReader((tmp_path / "out" / "tables" / "ablation.csv").open()))
    assert [(r["row"], r["leaky"]) for r in rows] == [("honest", "False"), ("leaky", "True")]


# -- 3: comparisons over seeds, with honest uncertainty -----------------------------------------

def test_both_methods_are_scored_over_one_class_set():
    """Method a predicts a class the truth lacks; b never does. Within one scoring both
    average over the same classes (before, a's UF1 counted a third class and b's two)."""
    from mer_ray.metrics import paired_difference

    truth = {f"s{i}": [0, 1, 0, 1] for i in range(6)}
    a = {s: (y, [0, 1, 0, 2]) for s, y in truth.items()}  # one false "2" per subject
    b = {s: (y, [0, 1, 0, 0]) for s, y in truth.items()}  # that clip called 0 instead
    d = paired_difference(a, b, range(3), resamples=50)
    # over classes {0, 1, 2}: a: F1 1, 0.8, 0 -> 0.6; b: 0.8, 0.8, 0 -> 0.5333
    assert np.isclose(d["uf1"]["difference"], 0.6 - 1.6 / 3)


def test_holm_adjustment():
    from mer_ray.metrics import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []


def test_the_difference_over_seeds_resamples_the_seeds():
    """Two seeds whose differences are opposite: the point estimate is their mean (0) and the
    interval spans both signs, because the seeds are drawn as well as the subjects."""
    from mer_ray.metrics import paired_difference

    truth = {f"s{i}": [0, 1, 2] * 2 for i in range(8)}
    right = {s: (y, y) for s, y in truth.items()}
    wrong = {s: (y, [(v + 1) % 3 for v in y]) for s, y in truth.items()}
    d = paired_difference([right, wrong], [wrong, right], range(3), resamples=400)
    assert d["uf1"]["difference"] == pytest.approx(0.0) and d["seeds"] == 2
    assert d["uf1"]["ci95"][0] < -0.5 and d["uf1"]["ci95"][1] > 0.5
    assert not d["uf1"]["excludes_zero"] and d["uf1"]["p"] > 0.3


def test_fold_keys_name_their_run(shards, tmp_path):
    """Two methods' folds of one subject are two keys: on Ray, one method's unfinished fold
    can no longer hide behind another's finished one."""
    from mer_ray.protocols.loso import plan_loso
    from mer_ray.train.jobs import loso_jobs

    keys = []
    for method in ("lbptop_svm", "ststnet"):
        exp = ExperimentConfig().with_overrides([*QUICK, f"model.method={method}"])
        run = plan_loso(shards, exp, tmp_path / "runs", name=method)
        keys += [j.key for j in loso_jobs(run.plan(), run.folds, tag=method)]
    assert len(keys) == len(set(keys)) == 8 and "ststnet/s1" in keys


# -- 5: compare as a user meets it ----------------------------------------------------------------

def test_a_partial_comparison_says_so_everywhere(shards, tmp_path, capsys):
    from mer_ray.protocols.compare import CompareSpec, compare_command
    from mer_ray.report import write_report

    spec = CompareSpec(methods=("lbptop_svm", "ststnet"),
                       data={"samm": DataChoice(shards=shards.root)},
                       settings=dict(parse_override(o) for o in QUICK),
                       user_set=frozenset({"data.frames", "data.size"}),
                       name="part", with_leaky=True)
    storage = str(tmp_path / "runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare_command(spec, RunOptions(storage_path=storage, local=True, max_folds=2),
                               lambda: None)
    assert all(r["partial"] == "2 of 4 folds" for r in rows)
    out = capsys.readouterr().out
    assert "[PARTIAL: 2 of 4 folds]" in out
    assert sum("PARTIAL: 2 of 4 folds" in x for x in out.splitlines()) >= 1 + len(rows)
    saved = json.loads((tmp_path / "runs" / "part.json").read_text())
    assert saved["partial"] == "2 of 4 folds" and saved["bootstrap"]["resamples"] == 1000
    for r in rows:
        summary = json.loads((tmp_path / "runs" / r["run"] / "summary.json").read_text())
        assert summary["partial"] == {"folds": 2, "of": 4}
    report = write_report([storage], tmp_path / "report", ("md", "latex", "csv"))
    text = report.read_text()
    assert "**PARTIAL: 2 of 4 folds**" in text
    assert "the best honest method" not in text
    tex = (tmp_path / "report" / "tables" / "part.tex").read_text()
    assert "**" not in tex and r"\merleaky{}" in tex and r"\merpartial{}" in tex
    table = list(csv.DictReader((tmp_path / "report" / "tables" / "part.csv").open()))
    assert {r["method"] for r in table} == {"lbptop_svm", "ststnet"}  # no mark in the name
    assert sorted(r["leaky"] for r in table) == ["False", "False", "True", "True"]
    assert all(r["trainable params"].isdigit() for r in table)  # numbers, not "13,278"


def test_a_second_comparison_of_the_same_name_is_refused(no_ray, shards, tmp_path, capsys):  # noqa: F811
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "compare.json").write_text(json.dumps({"grid": "compare", "rows": [],
                                                   "identity": {"methods": ["mer"]}}))
    assert main(["compare", "--methods", "lbptop_svm", "--shards", str(shards.root),
                 "--storage-path", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "compare.json holds another comparison" in err and "--name" in err


def test_a_flow_method_on_shards_without_flow_says_what_to_do(no_ray, tmp_path, capsys):  # noqa: F811
    plain = write_shards(tmp_path / "plain")
    assert main(["train", "--shards", str(plain.root), "--set", "model.method=ststnet",
                 "--storage-path", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "these shards have no optical flow" in err and "mer-ray prepare" in err
    assert main(["train", "--shards", str(plain.root), "--set", "model.method=ststnet",
                 "--flow", "tvl1", "--storage-path", str(tmp_path / "runs")]) == 2
    assert "these shards have no optical flow" in capsys.readouterr().err
