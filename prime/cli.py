"""The `prime` command line: models, training, evaluation, scoring and ranking, export, import and
reports. Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from prime.errors import UserError


def _build(args) -> None:
    from prime import models

    path = models.cache_dir() / args.name
    if args.name not in models.BUILTIN_MODELS:
        raise UserError(f"unknown model {args.name!r}; `prime models build` knows: {', '.join(models.BUILTIN_MODELS)}")
    if path.exists() and not args.force:
        try:
            models.check_model_dir(path, args.name)
            print(path)
            return
        except UserError:
            print(f"cache at {path} is incomplete; rebuilding", file=sys.stderr)
    t0 = time.time()
    if args.name == "smollm2-135m":
        models.convert_smollm2(path)
    else:
        from prime.evaluate import accuracy
        from prime.tasks import load_task
        from prime.tiny import TinySettings, build_tiny

        log = lambda msg: print(msg, file=sys.stderr)
        info = build_tiny(path, TinySettings(seed=args.seed), log=log)
        model, tok = models.load_base(path, quant="none", device=models.default_device()), models.load_tokenizer(path)
        test = load_task("arith", "test")
        greedy = accuracy(model, tok, test, max_new_tokens=128, greedy=True)
        sampled = accuracy(model, tok, test, max_new_tokens=128, greedy=False, seed=args.seed)
        models.write_manifest(path, **info, test_greedy_acc=greedy["acc"], test_pass1_t1=sampled["acc"])
        log(f"tiny built in {info['build_seconds']:.0f}s; test accuracy greedy {greedy['acc']:.3f}, "
            f"pass@1 at T=1.0 {sampled['acc']:.3f} (n={greedy['n']})")
    print(f"built {args.name} in {time.time() - t0:.0f}s", file=sys.stderr)
    print(path)


def _list(args) -> None:
    from prime import models

    root = models.cache_dir()
    print(f"model cache: {root}")
    for name in models.BUILTIN_MODELS:
        path = root / name
        if not path.exists():
            print(f"  {name:14s} not built   (prime models build {name})")
            continue
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        try:
            models.check_model_dir(path, name)
            state = "ok"
        except UserError:
            state = "INCOMPLETE"
        print(f"  {name:14s} {size:8.1f} MiB  {state:10s} {path}")


def _scorer(args):
    """The PRM/reference pair a scoring command uses, and how to name it: our model (+ a run's PRM
    checkpoint), or an external PRM with its reference (two full model directories)."""
    from prime.models import ExternalPRM, Roles, resolve_model
    from prime.score import checkpoint_dir

    if args.prm_model or args.ref_model:
        if not (args.prm_model and args.ref_model):
            raise UserError("an external PRM needs both --prm-model DIR and --ref-model DIR (the model it was trained from)")
        if args.model or args.run:
            raise UserError("give either --prm-model/--ref-model or --model/--run, not both")
        prm, ref = (resolve_model(d) for d in (args.prm_model, args.ref_model))
        return ExternalPRM(prm, ref, quant=args.quant), {"prm_model": str(prm), "ref_model": str(ref), "checkpoint": None}
    ckpt = None
    model = args.model
    if args.run is not None:
        ckpt = checkpoint_dir(Path(args.run), args.step)
        if model is None:
            from prime.records import RunDir

            layout = RunDir(args.run)
            try:
                model = layout.model_name()
            except UserError as e:
                raise UserError(f"{e}; cannot read the run's model name (field model.name): pass --model") from None
    elif args.step is not None:
        raise UserError("--step needs --run: the step of which run?")
    if model is None:
        raise UserError("give --model (tiny, smollm2-135m or a model directory), --run, or --prm-model and --ref-model")
    roles = Roles(resolve_model(model), quant=args.quant, layout=args.layout)
    if ckpt is not None:
        roles.load_adapters(ckpt, roles=("prm",))
    return roles, {"model": model, "checkpoint": str(ckpt) if ckpt else None}


def _score(args) -> None:
    from prime.score import score

    scorer, names = _scorer(args)
    out = score(scorer, args.prompt, args.response, answer=args.answer, beta=args.beta, raw_prompt=args.raw_prompt)
    out |= names
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{'token':>16s} {'log π_prm':>10s} {'log π_ref':>10s} {'reward':>10s} {'q_t':>10s}")
    for t in out["tokens"]:
        print(f"{t['text']!r:>16s} {t['prm_logp']:10.4f} {t['ref_logp']:10.4f} {t['reward']:10.5f} {t['q']:10.5f}")
    print("\nsteps (one per line):")
    for s in out["steps"]:
        print(f"  reward {s['reward']:+.5f}  value {s['value']:+.5f}  {s['text'].strip()!r}")
    print(f"\nr_φ(y) = {out['total_reward']:+.5f}, minimum step reward {out['min_step_reward']:+.5f} (β = {out['beta']})")
    if "verdict" in out:
        v = out["verdict"]
        print(f"outcome: {'unscorable' if v['score'] is None else v['score']}  ({v['detail']})")


def config_flags(args) -> dict:
    """The TrainConfig fields given on the command line (None: not given)."""
    from dataclasses import fields

    from prime.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}


def _train(args) -> None:
    from prime.config import TrainConfig, run_config
    from prime.trainer import train

    given = config_flags(args)
    if args.resume:
        cfg = run_config(args.resume, **given)
    else:
        cfg = TrainConfig.from_dict(given, source="command line")
    print(train(cfg, resume=bool(args.resume)))


def _prm_pretrain(args) -> None:
    """A PRM warm-started on the start model's own samples: PRIME steps with the policy held at the
    start model (learning rate 0), the PRM trained online on the verifier's outcome labels."""
    from prime.config import TrainConfig
    from prime.trainer import latest_checkpoint, train

    given = config_flags(args)
    if given.get("algo", "prime") != "prime" or given.get("prm", "online") != "online":
        raise UserError("prime prm pretrain trains the PRM: --algo prime and --prm online (the defaults) are required")
    if given.get("policy_lr", 0.0) != 0.0:
        raise UserError("prime prm pretrain holds the policy at the start model: leave out --policy-lr (it is 0 here)")
    cfg = TrainConfig.from_dict(given | {"policy_lr": 0.0, "algo": "prime", "prm": "online"}, source="command line")
    print(train(cfg))
    print(f"warm-started PRM: use it with `prime train --prm-init {latest_checkpoint(Path(cfg.out))}`")


def _eval(args) -> None:
    """The run's own evaluation (trainer.evaluate with the run's config: system prompt,
    temperature, length, seed) of one checkpoint's policy on a split."""
    import torch

    from prime.config import run_config
    from prime.models import LoraSettings, Roles, resolve_model
    from prime.records import RunDir
    from prime.score import checkpoint_dir
    from prime.trainer import evaluate, task_rows

    run = Path(args.run)
    if not RunDir(run).config_file.is_file():
        raise UserError(f"{run}: no config.json; is it a run directory made by `prime train`?")
    cfg = run_config(run, **({"seed": args.seed} if args.seed is not None else {}))
    ckpt = checkpoint_dir(run, args.step)
    roles = Roles(resolve_model(cfg.model), quant=cfg.quant, layout=cfg.layout,
                  lora=LoraSettings(r=cfg.lora_r, alpha=2 * cfg.lora_r),
                  device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    roles.load_adapters(ckpt, roles=("policy",))
    rows = task_rows(cfg, roles, args.split, args.n if args.n is not None else cfg.eval_n)
    acc = evaluate(roles, rows, cfg)
    print(json.dumps({"run": args.run, "checkpoint": ckpt.name, "split": args.split, "n": len(rows),
                      "greedy_acc": acc["eval/acc"], "sampled_acc": acc["eval/acc_sampled"],
                      "temperature": cfg.temperature, "seed": cfg.seed}))


def _rank(args) -> None:
    from prime.data import read_jsonl
    from prime.score import rank

    responses = list(args.response or [])
    if args.responses:
        rows = read_jsonl(Path(args.responses), required=("response",))
        responses += [str(r["response"]) for r in rows]
    scorer, names = _scorer(args)
    ranked = rank(scorer, args.prompt, responses, beta=args.beta, by=args.by, raw_prompt=args.raw_prompt)
    if args.json:
        print(json.dumps({"prompt": args.prompt, "beta": args.beta, "by": args.by, **names, "ranking": ranked}, indent=1))
        return
    print(f"{'rank':>4s} {'#':>3s} {'r_φ(y)':>10s} {'min step':>10s}  response")
    for r in ranked:
        first = r["response"].strip().splitlines()[0][:60] if r["response"].strip() else ""
        print(f"{r['rank']:4d} {r['index']:3d} {r['total_reward']:+10.5f} {r['min_step_reward']:+10.5f}  {first!r}")


def _import(args) -> None:
    from prime.importers import import_rollouts, read_trl_completions, read_verl_dump

    source = Path(args.source)
    if not source.is_dir():
        raise UserError(f"{source}: not a directory")
    rows = read_verl_dump(source) if args.format == "verl" else read_trl_completions(source)
    scorer, names = _scorer(args) if (args.model or args.run or args.prm_model or args.ref_model) else (None, {})
    out = import_rollouts(rows, Path(args.out), source, args.format, scorer, names, beta=args.beta,
                          low=args.filter_low, high=args.filter_high)
    scored = "scored token by token" if scorer is not None else "not scored (give --model, --run or --prm-model/--ref-model)"
    print(f"{out}: {len(rows)} rollouts from {args.format}, {scored}; open with python -m workbench --runs {out.parent}")


def _export_verl(args) -> None:
    from prime.export import export_verl

    out = export_verl(Path(args.source), Path(args.out), args.model_path)
    print(f"wrote {out}: " + ", ".join(sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())))


def _plan(args) -> None:
    from dataclasses import fields, replace
    from pathlib import Path

    from prime.models import resolve_model
    from prime.plan import Setup, Shape, as_json, budget_bytes, gib, largest_fit, plan, table

    source = Path(args.model) if Path(args.model).suffix == ".json" or Path(args.model).is_dir() else resolve_model(args.model)
    shape = Shape.of(source, name=Path(args.model).stem if str(args.model).endswith(".json") else args.model)
    setup = Setup(**{f.name: getattr(args, f.name) for f in fields(Setup) if getattr(args, f.name, None) is not None})
    budget = budget_bytes(args.budget)
    if setup.device == "cuda" and args.sampler is None:
        import torch

        from prime.models import choose_sampler

        copy = 4 * (shape.quantised + shape.other)
        setup = replace(setup, sampler=choose_sampler("auto", torch.device("cuda"), copy, int(budget)))
    result = plan(shape, setup)
    result["budget"] = budget
    result["fits"] = result["peak"] <= budget
    result["largest_fit"] = largest_fit(shape, setup, budget)
    if args.json:
        print(as_json(result))
        return
    print(table(result))
    fit = result["largest_fit"]
    print(f"budget {gib(budget)}: {'fits' if result['fits'] else 'does NOT fit'}; at most {fit['sample_rows']} rows "
          f"sampled at once (--sample-rows), {fit['micro_batch_rows']} rows of {setup.length} tokens per micro-batch "
          f"(--micro-batch-tokens {fit['micro_batch_tokens']})")


def _report(args) -> None:
    from prime.report import MAX_BYTES, write_report

    size = write_report([Path(r) for r in args.runs], Path(args.output), args.title)
    note = f" (over the {MAX_BYTES / 2**20:.0f} MB an e-mail attachment should stay under)" if size > MAX_BYTES else ""
    print(f"wrote {args.output}: {size / 2**20:.2f} MB, self-contained{note}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prime", description="PRIME Workbench engine: implicit process rewards, on one 4-bit base.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="build and list the built-in models").add_subparsers(dest="models_command", required=True)
    b = m.add_parser("build", help="train (tiny) or convert (smollm2-135m) a built-in model into the cache; prints its path")
    b.add_argument("name", help="tiny or smollm2-135m")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache holds it")
    b.add_argument("--seed", type=int, default=0, help="tiny only: training seed (default 0)")
    b.set_defaults(func=_build)
    m.add_parser("list", help="what is cached, with sizes").set_defaults(func=_list)

    from prime.config import add_arguments

    t = sub.add_parser("train", help="run PRIME (or RLOO) and write run records")
    add_arguments(t)
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (its config, overridable)")
    t.set_defaults(func=_train)

    r = sub.add_parser("prm", help="the implicit PRM on its own").add_subparsers(dest="prm_command", required=True)
    w = r.add_parser("pretrain", help="warm-start a PRM on the start model's own samples (EurusPRM-Stage-1's role, "
                                      "on-policy): PRIME steps with the policy held fixed; prints the --prm-init path",
                     description="Train only the PRM: each step samples from the start model (policy learning rate 0), "
                                 "filters, and updates the PRM on the verifier's outcome labels, exactly as `prime train` "
                                 "does. The last checkpoint's prm adapter is the warm start: `prime train --prm-init "
                                 "OUT/checkpoints/step_N`. Takes every `prime train` flag but --policy-lr.")
    add_arguments(w)
    w.set_defaults(func=_prm_pretrain)

    e = sub.add_parser("eval", help="accuracy of a run's policy on a split, as the run evaluates it (greedy, and sampled at its temperature)")
    e.add_argument("--run", required=True, help="run directory")
    e.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--n", type=int, help="problems to evaluate (default: the run's eval_n)")
    e.add_argument("--seed", type=int, help="sampling seed (default: the run's, so the test split at the run's "
                                            "eval_n reproduces its own eval/acc and eval/acc_sampled)")
    e.set_defaults(func=_eval)

    x = sub.add_parser("export", help="hand a run to another engine").add_subparsers(dest="export_command", required=True)
    v = x.add_parser("verl", help="data, reward function and launch script for veRL's PRIME recipe (see docs in the output)")
    v.add_argument("source", metavar="RUN_OR_CONFIG", help="a run directory, or a config JSON file (TrainConfig fields)")
    v.add_argument("--out", required=True, help="a new (or empty) directory to write into")
    v.add_argument("--model-path", help="the model path on the cluster (default: this machine's path of the run's model)")
    v.set_defaults(func=_export_verl)

    def scorer_arguments(p, prompt: bool = True):
        p.add_argument("--model", help="tiny, smollm2-135m or a local HF model directory")
        p.add_argument("--run", help="a run directory: score with its PRM checkpoint")
        p.add_argument("--step", type=int, help="checkpoint step of --run (default: the latest)")
        p.add_argument("--prm-model", help="an external implicit PRM: a full model directory (e.g. EurusPRM-Stage2)")
        p.add_argument("--ref-model", help="with --prm-model: the reference it was trained from (e.g. Qwen2.5-Math-7B-Instruct)")
        if prompt:
            p.add_argument("--prompt", required=True, help="the question (formatted with the model's prompt template)")
        p.add_argument("--beta", type=float, default=0.05, help="β of PRIME Eq. 3 (paper: 0.05; EurusPRM's card: 0.001)")
        p.add_argument("--quant", default="4bit", choices=("4bit", "none"))
        if prompt:
            p.add_argument("--raw-prompt", action="store_true", help="use --prompt verbatim, without the prompt template")
            p.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("score", help="per-token implicit rewards of one response")
    scorer_arguments(s)
    s.add_argument("--response", required=True, help="the response text to score")
    s.add_argument("--answer", help="reference answer: also print the outcome verdict")
    s.add_argument("--layout", default="shared", choices=("shared", "separate"))
    s.set_defaults(func=_score, layout="shared")

    r = sub.add_parser("rank", help="best-of-N: order K responses to one prompt by the implicit PRM")
    scorer_arguments(r)
    r.add_argument("--response", action="append", help="a response (repeat for each)")
    r.add_argument("--responses", metavar="FILE", help="a jsonl file with one {\"response\": ...} per line")
    r.add_argument("--by", default="total", choices=("total", "min-step"),
                   help="total: the accumulated reward r_φ(y) (EurusPRM-Stage2); min-step: the lowest step reward (Stage 1)")
    r.set_defaults(func=_rank, layout="shared")

    pl = sub.add_parser("plan", help="the memory a run needs, by component and phase, from the model's config alone (no weights)")
    pl.add_argument("--model", default="tiny", help="tiny, smollm2-135m, a model directory or a config.json (data/configs/qwen2.5-7b.json)")
    pl.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu: fp32, dequantised once; cuda: bf16, packed NF4")
    pl.add_argument("--budget", default="24GiB", help="memory to fit in (e.g. 24GiB, 80GB)")
    pl.add_argument("--prompt-tokens", type=int, default=None, help="longest prompt (default 64)")
    for name, kind in (("prompts_per_step", int), ("samples_per_prompt", int), ("max_new_tokens", int), ("lora_r", int),
                       ("micro_batch", int), ("micro_batch_tokens", int), ("sample_rows", int), ("chunk_rows", int)):
        pl.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    pl.add_argument("--sampler", choices=("merged", "adapter"), default=None, help="default: as `--sampler auto` chooses")
    pl.add_argument("--gradient-checkpointing", action="store_true", default=None)
    pl.add_argument("--optimizer", choices=("adamw", "adamw8bit", "paged_adamw8bit"), default=None)
    pl.add_argument("--json", action="store_true", help="the whole plan as JSON")
    pl.set_defaults(func=_plan)

    o = sub.add_parser("report", help="one self-contained HTML file of runs: config, curves, filter, token heatmaps")
    o.add_argument("runs", nargs="+", metavar="RUN", help="run directories (their curves are overlaid)")
    o.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    o.add_argument("--title", default="PRIME runs", help="the report's title")
    o.set_defaults(func=_report)

    i = sub.add_parser("import", help="rollouts made by veRL or TRL as a run directory the workbench opens")
    i.add_argument("format", choices=("verl", "trl"), help="verl: a trainer.rollout_data_dir; trl: a GRPO output_dir "
                   "(or its completions/ folder) written with log_completions=True")
    i.add_argument("source", help="the directory to import")
    i.add_argument("--out", required=True, help="the run directory to write")
    i.add_argument("--filter-low", type=float, default=0.2, help="accuracy filter bounds for the recomputed decisions")
    i.add_argument("--filter-high", type=float, default=0.8)
    scorer_arguments(i, prompt=False)
    i.set_defaults(func=_import, layout="shared", step=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"prime: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prime: interrupted", file=sys.stderr)
        return 130
    return 0
