"""``forgetbox evaluate`` end to end on a tiny digits configuration (seconds): the outputs and
their schema, the retrain row scoring as a perfect method up to sampling error, a rerun that
recomputes nothing, and bad settings refused before any work."""

import json
import math

import pytest
import torch

from forgetbox import cli
from forgetbox.evaluation import EvaluateConfig, evaluate, evaluate_config_from_dict
from forgetbox.experiment import ExperimentConfig

EXP = dict(profile="quick", train_per_class=10, num_to_forget=5)
EVAL = dict(
    models=6,
    shadow_models=12,
    forget_sets=2,
    methods=("original", "ntk", "retrain"),
    model_bootstrap=40,
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    res = evaluate(ExperimentConfig(out=str(out), **EXP), EvaluateConfig(**EVAL), log=lambda s: 0)
    return out, res


def test_outputs_and_schema(evaluated):
    out, res = evaluated
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["kind"] == "forgetbox-evaluation/1" and "Lemma 2" in doc["protocol"]
    assert set(doc["methods"]) == {"original", "ntk", "retrain"}
    for block in doc["methods"].values():
        assert len(block["challenge"]["epsilons"]) == 5  # one per D_f example
        assert block["challenge"]["models_per_side"] == 6
        assert set(block["klom"]) == {"direction", "forget", "retain", "val"}
        assert block["klom"]["direction"] == "KL(unlearned || retrained)"
        assert (
            block["challenge"]["not_computable"] >= 0 and "not_computable" in block["klom"]["val"]
        )
        assert {"loss", "confidence", "entropy_svc_member_rate"} <= set(block["population"])
        assert 0.0 <= block["ulira"]["balanced_accuracy"] <= 1.0
        assert len(block["readouts"]["error_forget"]["values"]) == 6
    assert doc["ulira_plan"]["unlearned_models"] == 24
    assert set(doc["against_retrain"]) == {"original", "ntk"}
    for rows in doc["against_retrain"].values():
        assert all("not_computable" in row for row in rows.values())
        for key in ("challenge_points", "klom_forget"):  # judged over models and examples
            both = rows[key]["models_and_examples"]
            assert both["draws"] <= 40 and (both["ci95"] is None or len(both["ci95"]) == 2)
        assert "models_and_examples" not in rows["ulira_balanced_accuracy"]
    html = (out / "evaluation.html").read_text()
    assert "<title>forgetbox evaluation" in html and html.count("<img") == 4


def test_the_retrain_row_scores_as_a_perfect_method_up_to_sampling_error(evaluated):
    _, res = evaluated
    m = res["methods"]
    u = m["retrain"]["ulira"]
    se = 0.5 / math.sqrt(min(u["pairs_in"], u["pairs_out"]))
    assert abs(u["balanced_accuracy"] - 0.5) <= 3 * se  # chance, within sampling error
    assert m["original"]["ulira"]["balanced_accuracy"] > u["balanced_accuracy"]
    # closer to the references than the original is, on both per-example scores
    assert (
        m["retrain"]["challenge"]["forget_quality"] >= m["original"]["challenge"]["forget_quality"]
    )
    assert m["retrain"]["klom"]["forget"]["median"] < m["original"]["klom"]["forget"]["median"]
    # the bands come from the retrain row: its own medians lie inside them
    assert all(r["side"] == "inside" for r in m["retrain"]["readouts"].values())


def test_a_second_evaluation_recomputes_nothing(evaluated):
    out, res = evaluated
    again = evaluate(ExperimentConfig(out=str(out), **EXP), EvaluateConfig(**EVAL), log=lambda s: 0)
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] > 0
    assert again["methods"]["ntk"]["challenge"] == res["methods"]["ntk"]["challenge"]
    assert (
        again["methods"]["ntk"]["ulira"]["per_example"]
        == res["methods"]["ntk"]["ulira"]["per_example"]
    )


def test_rerendering_judges_the_labels_again_and_leaves_the_numbers(evaluated, tmp_path):
    out, _ = evaluated
    folder = tmp_path / "copy"
    folder.mkdir()
    doc = json.loads((out / "evaluation.json").read_text())
    stale = doc["methods"]["ntk"]["readouts"]["l1_to_retrain_forget"]
    low = doc["bands"]["l1_to_retrain_forget"]["low"]
    stale["values"] = [low - 1.0] * len(stale["values"])  # far below the band, every model
    stale["median"], stale["side"], stale["meaning"] = low - 1.0, "below", "Streisand"
    stale.pop("margin", None)  # as scored before "closer" and before the edge rule
    (folder / "evaluation.json").write_text(json.dumps(doc))
    assert cli.main(["report", str(folder)]) == 0
    again = json.loads((folder / "evaluation.json").read_text())
    judged = again["methods"]["ntk"]["readouts"]["l1_to_retrain_forget"]
    assert judged["meaning"] == "closer" and judged["margin"] == pytest.approx(1.0)

    def numbers(d: dict) -> dict:
        for m in d["methods"].values():
            for r in m["readouts"].values():
                for label in ("meaning", "margin", "needed"):
                    r.pop(label, None)
        return d

    assert numbers(again) == numbers(doc)  # only the labels changed
    assert " closer<br>" in (folder / "evaluation.html").read_text()  # the cell, not the note


def _copy(out, folder):
    folder.mkdir()
    for path in out.iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _without_rescored(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "rescored"}


def test_a_rescore_from_the_stored_inputs_gives_every_score_again(evaluated, tmp_path):
    out, _ = evaluated
    folder = _copy(out, tmp_path / "copy")
    doc = json.loads((folder / "evaluation.json").read_text())
    assert doc["inputs"]["file"] == "evaluation-inputs.npz"
    # a stale score (as one scored by older code) is computed again, not copied
    stale = json.loads(json.dumps(doc))
    stale["methods"]["ntk"]["challenge"]["epsilons"][0] = 123.0
    stale["against_retrain"]["ntk"]["klom_forget"]["difference"] = 9.0
    (folder / "evaluation.json").write_text(json.dumps(stale))
    assert cli.main(["report", "--rescore", str(folder)]) == 0
    again = json.loads((folder / "evaluation.json").read_text())
    assert _without_rescored(again) == doc  # every number, bit for bit
    assert again["rescored"]["source"] and again["rescored"]["created"]
    assert "Rescored on" in (folder / "evaluation.html").read_text()


def test_an_unscored_evaluation_is_scored_later_from_its_inputs(evaluated, tmp_path, capsys):
    # --no-score (a lent GPU trains, this machine scores): the same models from the cache
    out, _ = evaluated
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[experiment]\nprofile = "quick"\ntrain_per_class = 10\nnum_to_forget = 5\n'
        f'cache_dir = "{out / "cache"}"\n[evaluate]\nmodels = 6\nshadow_models = 12\n'
        'forget_sets = 2\nmethods = ["original", "ntk", "retrain"]\nmodel_bootstrap = 40\n'
    )
    folder = tmp_path / "unscored"
    assert cli.main(["evaluate", "--config", str(cfg), "--out", str(folder), "--no-score"]) == 0
    assert "forgetbox report --rescore" in capsys.readouterr().out
    record = json.loads((folder / "evaluation.json").read_text())
    assert record["kind"] == "forgetbox-evaluation-unscored/1" and "methods" not in record
    assert not (folder / "evaluation.html").exists()
    assert cli.main(["report", str(folder)]) == 2  # nothing to render yet
    assert "forgetbox report --rescore" in capsys.readouterr().err
    assert cli.main(["report", "--rescore", str(folder)]) == 0
    scored = json.loads((folder / "evaluation.json").read_text())
    reference = json.loads((out / "evaluation.json").read_text())
    run_only = ("provenance", "wall_seconds", "compute", "cache", "inputs", "rescored")
    for doc in (scored, reference):  # where the runs wrote differs, nothing else
        for key in ("out", "cache_dir"):
            doc["config"]["experiment"].pop(key)
    assert {k: v for k, v in scored.items() if k not in run_only} == {
        k: v for k, v in reference.items() if k not in run_only
    }
    assert scored["inputs"] == record["inputs"] and scored["compute"] == record["compute"]
    assert (folder / "evaluation.html").is_file()


@pytest.mark.parametrize("damage", ["flip", "pickle", "shape", "missing", "unrecorded"])
def test_a_rescore_refuses_inputs_that_are_altered_or_absent(evaluated, tmp_path, capsys, damage):
    import hashlib

    import numpy as np

    out, _ = evaluated
    folder = _copy(out, tmp_path / "copy")
    npz, js = folder / "evaluation-inputs.npz", folder / "evaluation.json"
    doc = json.loads(js.read_text())
    if damage == "flip":
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2] ^= 1
        npz.write_bytes(bytes(raw))
        message = "SHA-256 differs"
    elif damage in ("pickle", "shape"):  # behind a matching hash
        with np.load(npz) as z:
            arrays = dict(z)
        if damage == "pickle":  # an object array: loading it would unpickle
            arrays["num_classes"] = np.asarray([{}])
            message = "unreadable score inputs"
        else:
            arrays["ntk/logits_test"] = arrays["ntk/logits_test"][:, :-1]
            message = "array ntk/logits_test has shape"
        np.savez(npz, **arrays)
        doc["inputs"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
        js.write_text(json.dumps(doc))
    elif damage == "missing":
        npz.unlink()
        message = "missing"
    else:
        del doc["inputs"]
        js.write_text(json.dumps(doc))
        message = "records no score inputs"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli.main(["report", "--rescore", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written


@pytest.mark.parametrize(
    "table,message",
    [
        ({"models": 2}, "models must be >= 3"),
        ({"models": "8"}, "must be an integer"),
        ({"methods": ["ntk", "magic"]}, "unknown methods ['magic']"),
        ({"folds": 1, "shadow_models": 4}, "folds must lie in"),
        ({"shadows": 4}, "unknown keys ['shadows']"),
        ({"relearn": "yes"}, "relearn must be true or false"),
    ],
)
def test_bad_evaluate_settings_are_refused_with_their_name(table, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluate_config_from_dict(table)


def test_the_command_reads_the_evaluate_table_and_refuses_before_any_work(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[experiment]\nprofile = "quick"\n[evaluate]\nmodels = 2\n')
    out = tmp_path / "out"
    assert cli.main(["evaluate", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "[evaluate]" in err and "models must be >= 3" in err and "Traceback" not in err
    assert not out.exists()


def test_a_linearized_evaluation_adds_a_retrain_row_paired_with_the_references(tmp_path):
    # the paired row is reference k's own exact retrain with fresh noise: its seeds are the
    # references', its weights differ from the exact retrain by the mechanism's noise alone
    from forgetbox.evaluation import ensembles
    from forgetbox.evaluation.config import PAIRED_RETRAIN
    from forgetbox.evaluation.releases import mechanism_sigma
    from forgetbox.experiment.run import prepare_run
    from forgetbox.functional import flatten
    from forgetbox.report import evaluation_page

    exp = ExperimentConfig(out=str(tmp_path), linearized=True, **EXP)
    cfg = EvaluateConfig(models=4, shadow_models=0, model_bootstrap=20)
    res = evaluate(exp, cfg, log=lambda s: 0)
    assert set(res["methods"]) == {"original", "certified", "retrain", PAIRED_RETRAIN}
    assert set(res["against_paired_retrain"]) == {"original", "certified"}
    assert PAIRED_RETRAIN in res["against_retrain"]  # the seed pairing's own effect
    assert res["certificate"]["methods"][PAIRED_RETRAIN]["models"] == 4
    assert json.loads((tmp_path / "evaluation.json").read_text())["against_paired_retrain"]
    page = (tmp_path / "evaluation.html").read_text()
    assert "Scores against the paired retrain row" in page
    assert evaluation_page.PAIRED == PAIRED_RETRAIN  # the report's copy of the name
    from forgetbox.atomic import strict_json
    from forgetbox.evaluation.rescore import rescore

    again = json.loads(strict_json(rescore(tmp_path)))  # as evaluation.json would hold it
    assert _without_rescored(again) == json.loads(
        (tmp_path / "evaluation.json").read_text()
    )  # the certificate too, from the stored releases and control

    stages, tasks = prepare_run(
        ExperimentConfig(**{**exp.__dict__, "seeds": (cfg.split_seed,)}), lambda s: 0
    )
    task = tasks[cfg.split_seed]
    idx = ensembles._index(stages, task, cfg.seed_base)
    paired, _, seed = ensembles._member_model(stages, task, idx, PAIRED_RETRAIN, cfg, 0)
    retrain, _, other = ensembles._member_model(stages, task, idx, "retrain", cfg, 0)
    reference = ensembles._release(stages, task, idx.reference, "reference", 0)
    assert seed == idx.seed != other

    def flat(m):  # the released weights w (the linearization point w0 is not noised)
        return flatten(m.w()).detach().double()

    sigma = mechanism_sigma(stages, task, torch.float32)
    noise = flat(paired) - flat(idx.reference)
    assert noise.std().item() == pytest.approx(sigma, rel=0.05)
    assert abs(noise.mean().item()) < 4 * sigma / noise.numel() ** 0.5
    # fresh noise: not the reference's release, and the retrain row is farther than the noise
    assert (flat(paired) - flat(reference)).std().item() == pytest.approx(2**0.5 * sigma, rel=0.05)
    assert (flat(retrain) - flat(idx.reference)).norm() > 1.5 * noise.norm()


def test_a_method_that_diverges_on_some_models_is_recorded_and_scored_without_them(
    tmp_path, monkeypatch
):
    from forgetbox import methods
    from forgetbox.evaluation.shadows import SHADOW_SEED
    from forgetbox.experiment import stages

    cfg = EvaluateConfig(**{**EVAL, "methods": ("original", "finetune", "retrain")})
    bad = {cfg.seed_base + 2, cfg.seed_base + SHADOW_SEED}  # member k = 2, shadow model 0
    real = stages.methods.forget

    def forget(method, *args, seed, **kw):
        if method == "finetune" and seed in bad:
            raise methods.MethodDivergedError("finetune: the weights are not finite (test)")
        return real(method, *args, seed=seed, **kw)

    out, cache = tmp_path / "out", tmp_path / "cache"
    exp = ExperimentConfig(out=str(out), cache_dir=str(cache), **EXP)
    with monkeypatch.context() as m:
        m.setattr(stages.methods, "forget", forget)
        evaluate(exp, cfg, log=lambda s: 0)
    doc = json.loads((out / "evaluation.json").read_text())
    ft = doc["methods"]["finetune"]
    assert ft["diverged"] == [2] and "diverged" not in doc["methods"]["original"]
    for key, r in ft["readouts"].items():
        assert r["values"][2] is None and r["not_computable"] == 1, key
        assert r["meaning"] != "inside" or r["median"] is not None
    assert ft["challenge"]["models_per_side"] == 5  # its other models, their references
    assert doc["methods"]["original"]["challenge"]["models_per_side"] == 6
    assert ft["ulira"]["diverged_rows"] == 2  # shadow model 0's two cohorts
    assert ft["ulira"]["pairs_in"] < doc["methods"]["original"]["ulira"]["pairs_in"]
    assert ft["seconds"][2] is not None  # the time until it diverged
    vs = doc["against_retrain"]["finetune"]["challenge_points"]["models_and_examples"]
    assert vs["draws"] > 0
    page = (out / "evaluation.html").read_text()
    assert "finetune diverged on 1 of its 6 models (models 3)" in page
    assert "2 U-LiRA shadow rows" in page
    # the divergence is cached: a rerun without the fault reads it, and computes nothing
    again_out = tmp_path / "again"
    evaluate(
        ExperimentConfig(out=str(again_out), cache_dir=str(cache), **EXP), cfg, log=lambda s: 0
    )
    again = json.loads((again_out / "evaluation.json").read_text())
    assert again["methods"]["finetune"]["diverged"] == [2] and again["cache"]["misses"] == 0
    # scored again from the stored inputs: the same numbers
    assert cli.main(["report", "--rescore", str(out)]) == 0
    rescored = json.loads((out / "evaluation.json").read_text())
    assert rescored["methods"] == doc["methods"]
    assert rescored["against_retrain"] == doc["against_retrain"]
