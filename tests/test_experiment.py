"""`forgetbox run` end to end on a tiny configuration."""

import json
import tomllib
from pathlib import Path

import pytest
import torch
from PIL import Image

from forgetbox import cli, experiment, report
from forgetbox.cli.experiment_args import experiment_config
from forgetbox.experiment import READOUT_KEYS, ExperimentConfig, claims
from forgetbox.experiment import run as experiment_run
from forgetbox.experiment.config import config_from_dict
from forgetbox.report import figures, headline

TINY = dict(profile="quick", seeds=(0, 1), train_per_class=10, num_to_forget=5)


def _numbers(results: dict) -> dict:
    return {
        m: [{k: v for k, v in r.items() if k != "seconds"} for r in b["per_seed"]]
        for m, b in results["methods"].items()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, experiment.run_experiment(ExperimentConfig(out=str(out), **TINY), log=lambda s: 0)


def test_results_follow_the_schema(run):
    out, res = run
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk) >= {"config", "seeds", "methods", "claims", "tradeoff", "activation_path"}
    assert on_disk["seeds"] == [0, 1]
    assert set(on_disk["methods"]) == {
        "original",
        "retrain",
        "finetune",
        "fisher",
        "ntk",
        "ntk_fisher",
        "newton",
    }
    required = set(READOUT_KEYS) - {"error_val", "loss_forget", "info_activations_diag_nats_forget"}
    for m, block in on_disk["methods"].items():
        assert len(block["per_seed"]) == 2
        for row in block["per_seed"]:
            assert required <= set(row), (m, required - set(row))
        assert set(block["mean"]) == set(block["std"])
    ids = [c["id"] for c in on_disk["claims"]]
    assert ids == list(range(1, 10))
    for c in on_disk["claims"]:
        assert c["holds"] in (True, False, None) and c["evidence"]
    assert on_disk["tradeoff"] and on_disk["activation_path"]
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0] == "method,seed,readout,value" and len(csv) > 7 * 2 * 10
    toml = (out / "config.toml").read_text()
    assert "[experiment]" in toml and "torch" in toml
    # config.toml reads back as the run's settings, less the folders it wrote to
    written = tomllib.loads(toml)["experiment"]
    assert on_disk["config"]["out"] and not {"out", "cache_dir"} & set(written)
    expected = {k: v for k, v in on_disk["config"].items() if v is not None}
    expected = {k: v for k, v in expected.items() if k not in ("out", "cache_dir")}
    assert config_from_dict(written).as_dict() == config_from_dict(expected).as_dict()
    splits = json.loads((out / "splits.json").read_text())
    assert {"train", "val", "test", "forget"} <= set(splits[0])


def test_figures_are_valid_images_and_report_has_every_section(run):
    out, _ = run
    for name in ("fig1_pca", "fig2_readouts", "fig3_tradeoff", "fig4_l1_path"):
        with Image.open(out / f"{name}.png") as im:
            im.verify()
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    html = (out / "report.html").read_text()
    for section in (
        'id="claims"',
        'id="results"',
        'id="figures"',
        'id="timings"',
        'id="configuration"',
    ):
        assert section in html
    # four figures, each embedded twice: wide, and the narrow drawing small screens get
    assert html.count("<figure>") == 4 and html.count("<picture>") == 4
    assert html.count("data:image/png;base64,") + html.count("data:image/svg+xml;base64,") == 8


def test_second_identical_run_recomputes_nothing(run):
    out, res = run
    again = experiment.run_experiment(ExperimentConfig(out=str(out), **TINY), log=lambda s: 0)
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] > 0
    assert _numbers(again) == _numbers(res)


def test_interrupted_run_resumes_to_the_same_results(run, tmp_path, monkeypatch):
    _, res = run
    calls = {"n": 0}
    real = experiment_run.readout_row

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # dies in the second seed
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(experiment_run, "readout_row", flaky)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(ExperimentConfig(out=str(tmp_path), **TINY), log=lambda s: 0)
    monkeypatch.setattr(experiment_run, "readout_row", real)
    resumed = experiment.run_experiment(
        ExperimentConfig(out=str(tmp_path), **TINY), log=lambda s: 0
    )
    assert resumed["cache"]["hits"] > 0
    assert _numbers(resumed) == _numbers(res)  # also: same seeds, same numbers


def test_cli_flags_and_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[experiment]\nprofile = "quick"\nseeds = [3]\nmethods = ["ntk"]\n'
        "train_per_class = 8\nnum_to_forget = 3\n"
    )
    args = cli.build_parser().parse_args(
        ["run", "--config", str(cfg), "--seeds", "4", "--out", str(tmp_path / "o")]
    )
    resolved = experiment_config(args).resolved()
    assert resolved.seeds == (4,) and resolved.profile == "quick"
    assert resolved.methods == ("original", "retrain", "ntk")
    assert cli.main(["run", "--config", str(cfg), "--methods", "bogus"]) == 2
    (tmp_path / "bad.toml").write_text("[experiment]\nnot_a_key = 1\n")
    assert cli.main(["run", "--config", str(tmp_path / "bad.toml")]) == 2


def test_a_flag_corrects_a_setting_the_file_gets_wrong(tmp_path):
    # a file written for a GPU (device = "cuda", width 0) read where a flag replaces the value:
    # the file alone is refused, the file with the flag is valid (flags override before checks)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[experiment]\nprofile = "quick"\nwidth = 0.0\n')
    parse = cli.build_parser().parse_args
    with pytest.raises(ValueError, match="width"):
        experiment_config(parse(["run", "--config", str(cfg)]))
    fixed = experiment_config(parse(["run", "--config", str(cfg), "--width", "0.5"]))
    assert fixed.width == 0.5 and fixed.profile == "quick"


def test_help_lists_every_command_with_its_description(capsys):
    from forgetbox.cli import COMMANDS, main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[1]
        assert f"{name} " in text and " ".join(command.HELP.split()) in text, name
    assert {c.__name__.rsplit(".", 1)[1] for c in COMMANDS} >= {"run", "train", "scrub", "prepare"}
    for name, flag in (("scrub", "--weights"), ("prepare", "--out"), ("run", "--profile")):
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0 and flag in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("forgetbox ")


def test_train_command_prints_the_three_models(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--profile",
            "quick",
            "--seeds",
            "0",
            "--train-per-class",
            "10",
            "--num-to-forget",
            "5",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["w0", "original", "retrain"]


def test_ntk_and_ntk_fisher_share_one_solve_per_seed(tmp_path, monkeypatch):
    from forgetbox import ntk

    calls = []
    real = ntk.ntk_direction

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ntk, "ntk_direction", counting)
    cfg = ExperimentConfig(out=str(tmp_path), **dict(TINY, seeds=(0,)))
    res = experiment.run_experiment(cfg, log=lambda s: 0)
    assert len(calls) == 1
    # both methods still report the solve in their own time
    solve = res["methods"]["ntk"]["per_seed"][0]["seconds"]
    assert res["methods"]["ntk_fisher"]["per_seed"][0]["seconds"] >= 0.5 * solve > 0


def test_profiles_set_the_finetuning_schedule_and_baseline_rate():
    cpu = ExperimentConfig(dataset="cifar10-npz", profile="cpu").resolved()
    assert (cpu.finetune_schedule, cpu.finetune_baseline_lr) == ("cosine", 0.003)
    paper = ExperimentConfig(dataset="cifar10-npz", profile="paper").resolved()
    assert (paper.finetune_schedule, paper.finetune_baseline_lr) == ("constant", 0.01)
    mine = ExperimentConfig(profile="cpu", finetune_schedule="constant").resolved()
    assert mine.finetune_schedule == "constant"
    with pytest.raises(ValueError, match="finetune_schedule"):
        ExperimentConfig(finetune_schedule="linear").resolved()
    # bad settings are refused before any training, not when the method first runs
    with pytest.raises(ValueError, match="trapezium_leg"):
        ExperimentConfig(trapezium_leg="side").resolved()
    with pytest.raises(ValueError, match="finetune_baseline_lr"):
        ExperimentConfig(finetune_baseline_lr=-0.1).resolved()


def test_a_method_setting_reaches_the_path_and_tradeoff_caches(tmp_path):
    base = dict(TINY, seeds=(0,), cache_dir=str(tmp_path / "cache"))
    runs = [
        experiment.run_experiment(
            ExperimentConfig(out=str(tmp_path / leg), trapezium_leg=leg, **base), log=lambda s: 0
        )
        for leg in ("full", "retain")
    ]

    def ntk_path(res):
        return [r["forget"] for r in res["activation_path"] if r["method"] == "ntk"]

    scales = [r["methods"]["ntk"]["per_seed"][0]["trapezium_scale"] for r in runs]
    assert abs(scales[0] - scales[1]) > 1e-6
    assert ntk_path(runs[0]) != ntk_path(runs[1])
    # the fine-tunings are shared between the two runs: only the NTK stages were recomputed
    assert runs[1]["cache"]["hits"] > 0


def test_large_models_record_every_kth_epoch_of_their_path():
    assert experiment.record_stride(100, 255_000) == 1  # All-CNN x0.4: every epoch
    assert experiment.record_stride(300, 1_620_000) == 2  # All-CNN: 1.9 GB -> every 2nd
    k = experiment.record_stride(300, 11_200_000)  # ResNet-18: 13 GB otherwise
    assert 300 / k * 11_200_000 * 4 <= experiment.TRAJECTORY_BYTES
    assert 300 / (k - 1) * 11_200_000 * 4 > experiment.TRAJECTORY_BYTES  # the least stride


def test_an_unusable_device_is_refused_before_any_work(tmp_path, monkeypatch):
    for bad in ("gpu", "tpu", "mps"):
        with pytest.raises(ValueError, match="device"):
            ExperimentConfig(out=str(tmp_path / "x"), device=bad, **TINY).resolved()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        ExperimentConfig(out=str(tmp_path / "x"), device="cuda", **TINY).resolved()
    assert not (tmp_path / "x").exists()


def test_outputs_stopped_while_written_leave_the_previous_ones_whole(run, tmp_path, monkeypatch):
    import shutil

    src, res = run
    out = tmp_path / "out"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("cache"))
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    newer = dict(res, wall_seconds=-1.0)

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures.fig_tradeoff, "fig3", stopped)
    with pytest.raises(KeyboardInterrupt):
        experiment.publish(out, newer, [])
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # no staging left either
    monkeypatch.undo()
    experiment.publish(out, newer, [])
    assert json.loads((out / "results.json").read_text())["wall_seconds"] == -1.0
    assert sorted(f.name for f in out.iterdir()) == sorted(before)


def test_a_diverged_or_unconverged_finetuning_is_flagged_in_the_outputs(run):

    _, res = run
    ok = {"epochs": 40, "train_error": 0.0, "reached_zero_error": True}
    diverged = {"epochs": 65, "train_error": 0.64, "reached_zero_error": True}
    short = {"epochs": 30, "train_error": 0.17, "reached_zero_error": False}
    flagged = dict(
        res,
        training=[
            {"seed": 0, "original": ok, "retrain": ok},
            {"seed": 1, "original": short, "retrain": diverged},
        ],
    )
    warned = claims.training_warnings(flagged)
    assert len(warned) == 2
    assert "seed 1: the original" in warned[0] and "without reaching zero" in warned[0]
    assert "retrain" in warned[1] and "64.0%" in warned[1] and "diverged" in warned[1]
    assert claims.training_warnings(dict(res, training=[{"seed": 0, "original": ok}])) == []
    kept = dict(ok, restored_from_epoch=61)
    (note,) = claims.training_warnings(dict(res, training=[{"seed": 2, "retrain": kept}]))
    assert "seed 2: the retrain" in note and "after epoch 61" in note
    flagged["warnings"] = warned  # as the pipeline records them in results.json
    assert "warning: seed 1: the retrain" in report.summary_table(flagged)
    page = report.html_report(flagged, {})
    assert 'class="warnings"' in page and "64.0%" in page
    assert 'class="warnings"' not in report.html_report(dict(flagged, warnings=[]), {})


def test_the_report_counts_the_compute_of_cached_stages(run):
    _, res = run
    comp = {
        "total_seconds": 6000.0,
        "this_run_seconds": 15.0,
        "from_cache_seconds": 5985.0,
        "stages_without_recorded_time": 0,
        "per_stage_kind_seconds": {"finetune-retrain": 5000.0, "method-ntk": 1000.0},
    }
    page = report.html_report(dict(res, wall_seconds=15.0, compute=comp), {})
    assert "Total compute of this run: 6000 s, of which 15 s computed by this invocation" in page
    assert "finetune-retrain" in page
    # an older results.json without per-stage times: what it recorded, said to be partial
    old = {k: v for k, v in res.items() if k != "compute"}
    page = report.html_report(old, {})
    want = sum(e[w]["seconds"] for e in res["training"] for w in ("original", "retrain"))
    want += sum(
        r["seconds"] for m, b in res["methods"].items() if m != "retrain" for r in b["per_seed"]
    )
    assert f"Total compute of this run: {want:.0f} s (only the stages whose time" in page


def test_the_headline_gives_the_speed_up_over_the_same_seeds_retraining(run):
    _, res = run
    rows = {r["method"]: r for r in headline.headline_rows(res)}
    retrain = {e["seed"]: e["retrain"]["seconds"] for e in res["training"]}
    ntk = {r["seed"]: r["seconds"] for r in res["methods"]["ntk"]["per_seed"]}
    want = [retrain[s] / ntk[s] for s in sorted(ntk)]
    assert rows["ntk"]["speedup"] == pytest.approx((sum(want) / len(want), min(want), max(want)))
    assert rows["retrain"]["speedup"][0] == pytest.approx(1.0)
    assert rows["original"]["speedup"] is None
    assert rows["retrain"]["seconds"][0] == pytest.approx(sum(retrain.values()) / len(retrain))
    page = report.html_report(res, {})
    assert "time against retraining" in page and "nan" not in page.split('id="headline"')[1][:4000]


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[1].glob("docs/results/*.toml")), ids=str
)
def test_every_committed_config_is_valid(path):
    # the configs beside the committed results (and the GPU scripts' ones, read here with
    # --device cpu as a flag would on a machine without CUDA) parse and pass every check
    from forgetbox.cli.evaluate import evaluate_config

    command = "evaluate" if "[evaluate]" in path.read_text() else "run"
    args = cli.build_parser().parse_args([command, "--config", str(path), "--device", "cpu"])
    cfg = experiment_config(args).resolved()
    assert cfg.device == "cpu"
    if command == "evaluate":
        assert evaluate_config(args).models >= 1
